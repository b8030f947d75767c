//! Where a new topic's replicas go: spread over brokers (over racks when brokers have racks),
//! leaders balanced. Pure: the caller passes the brokers and a starting point.
