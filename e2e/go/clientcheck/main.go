// Command clientcheck drives a Kafka-compatible broker with franz-go (a strict Go client that
// negotiates the newest versions it can and uses fetch sessions), and fails on any difference
// from what Apache Kafka does. Run by e2e/python/test_go_client.py against Kafka and Weir:
//
//	go run ./clientcheck HOST:PORT TOPIC
//
// With CLIENTCHECK_CA (a PEM file) it speaks TLS trusting that CA; with CLIENTCHECK_SASL
// (MECHANISM:USER:PASSWORD, MECHANISM SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN) it logs in.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

const (
	partitions = 3
	records    = 900
)

func check(ok bool, format string, args ...any) {
	if !ok {
		fmt.Fprintf(os.Stderr, "check failed: "+format+"\n", args...)
		os.Exit(1)
	}
}

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

// security is TLS and SASL from the environment, for every client.
func security() []kgo.Opt {
	var opts []kgo.Opt
	if ca := os.Getenv("CLIENTCHECK_CA"); ca != "" {
		pem, err := os.ReadFile(ca)
		must(err, "CLIENTCHECK_CA")
		pool := x509.NewCertPool()
		check(pool.AppendCertsFromPEM(pem), "CLIENTCHECK_CA holds no certificate")
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{RootCAs: pool}))
	}
	if s := os.Getenv("CLIENTCHECK_SASL"); s != "" {
		parts := strings.SplitN(s, ":", 3)
		check(len(parts) == 3, "CLIENTCHECK_SASL is MECHANISM:USER:PASSWORD")
		auth := scram.Auth{User: parts[1], Pass: parts[2]}
		switch parts[0] {
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(auth.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(auth.AsSha512Mechanism()))
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: parts[1], Pass: parts[2]}.AsMechanism()))
		default:
			check(false, "CLIENTCHECK_SASL mechanism %q", parts[0])
		}
	}
	return opts
}

func main() {
	bootstrap, topic := os.Args[1], os.Args[2]
	sec := security()
	newClient := func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(bootstrap)}, sec...), opts...)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	// Admin: create with a config, read it back, list the topic.
	cl, err := newClient()
	must(err, "admin client")
	adm := kadm.NewClient(cl)
	retention := "86400000"
	created, err := adm.CreateTopics(ctx, partitions, 1, map[string]*string{"retention.ms": &retention}, topic)
	must(err, "create topics")
	must(created[topic].Err, "create topic")
	details, err := adm.ListTopics(ctx, topic)
	must(err, "list topics")
	check(len(details[topic].Partitions) == partitions, "partitions: %d", len(details[topic].Partitions))
	configs, err := adm.DescribeTopicConfigs(ctx, topic)
	must(err, "describe configs")
	rc, err := configs.On(topic, nil)
	must(err, "configs of topic")
	found := false
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			found = c.MaybeValue() == retention
		}
	}
	check(found, "retention.ms read back")

	// Idempotent producer (franz-go's default), acks=all, zstd, records to explicit partitions.
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	pr, err := newClient(
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	must(err, "producer")
	for i := 0; i < records; i++ {
		r := &kgo.Record{
			Topic:     topic,
			Partition: int32(i % partitions),
			Key:       []byte("key-" + strconv.Itoa(i)),
			Value:     []byte("value-" + strconv.Itoa(i)),
			Timestamp: base.Add(time.Duration(i) * time.Millisecond),
			Headers:   []kgo.RecordHeader{{Key: "i", Value: []byte(strconv.Itoa(i))}},
		}
		pr.Produce(ctx, r, func(r *kgo.Record, err error) {
			must(err, "produce")
			i, _ := strconv.Atoi(string(r.Value[len("value-"):]))
			check(r.Offset == int64(i/partitions), "offset of record %d: %d", i, r.Offset)
		})
	}
	must(pr.Flush(ctx), "flush")
	pr.Close()

	// Offsets: end offsets, and the first offset at a timestamp.
	ends, err := adm.ListEndOffsets(ctx, topic)
	must(err, "list end offsets")
	ends.Each(func(o kadm.ListedOffset) {
		check(o.Err == nil && o.Offset == records/partitions, "end offset of %d: %d (%v)", o.Partition, o.Offset, o.Err)
	})
	at, err := adm.ListOffsetsAfterMilli(ctx, base.Add(300*time.Millisecond).UnixMilli(), topic)
	must(err, "list offsets after milli")
	o, ok := at.Lookup(topic, 0)
	check(ok && o.Err == nil && o.Offset == 100, "offset at time on partition 0: %+v", o)

	// Direct partition consumption from the start: every record once, in order, with headers.
	start := map[int32]kgo.Offset{}
	for p := int32(0); p < partitions; p++ {
		start[p] = kgo.NewOffset().AtStart()
	}
	co, err := newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}))
	must(err, "consumer")
	seen := make([]bool, records)
	got := 0
	for got < records {
		fetches := co.PollFetches(ctx)
		fetches.EachError(func(t string, p int32, err error) { must(err, "fetch "+t) })
		fetches.EachRecord(func(r *kgo.Record) {
			i, err := strconv.Atoi(string(r.Value[len("value-"):]))
			must(err, "value")
			check(!seen[i], "record %d read twice", i)
			seen[i] = true
			check(string(r.Key) == "key-"+strconv.Itoa(i), "key of record %d", i)
			check(r.Offset == int64(i/partitions), "offset of record %d", i)
			check(r.Timestamp.Equal(base.Add(time.Duration(i)*time.Millisecond)), "timestamp of record %d", i)
			check(len(r.Headers) == 1 && string(r.Headers[0].Value) == strconv.Itoa(i), "header of record %d", i)
			got++
		})
	}
	co.Close()

	// DeleteRecords, then delete the topic.
	toDelete := kadm.Offsets{}
	toDelete.Add(kadm.Offset{Topic: topic, Partition: 1, At: 10})
	deleted, err := adm.DeleteRecords(ctx, toDelete)
	must(err, "delete records")
	d, ok := deleted.Lookup(topic, 1)
	check(ok && d.Err == nil && d.LowWatermark == 10, "low watermark after delete records: %+v", d)
	del, err := adm.DeleteTopics(ctx, topic)
	must(err, "delete topics")
	must(del[topic].Err, "delete topic")
	cl.Close()
	fmt.Printf("go-client-check: ok (%d records)\n", records)
}
