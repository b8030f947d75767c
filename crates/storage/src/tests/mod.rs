mod log_props;
