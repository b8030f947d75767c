// The Apache Kafka Java client (kafka-clients, from the reference Kafka's jars) against any
// Kafka-compatible broker. Run by e2e/python/test_java_client.py against Apache Kafka and Weir:
//
//   java -cp "$(scripts/kafka-reference.sh libs)/*" e2e/java/JavaClientCheck.java HOST:PORT TOPIC
//
// Exits non-zero (with the failed check) on any difference from what Apache Kafka does.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class JavaClientCheck {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError("check failed: " + what);
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int partitions = 3;
        int n = 900;
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        common.put("request.timeout.ms", "15000");
        // TLS and SASL settings, when the caller gives them (a properties file).
        String extra = System.getenv("CLIENT_PROPERTIES");
        if (extra != null && !extra.isEmpty()) {
            try (java.io.FileReader r = new java.io.FileReader(extra)) {
                common.load(r);
            }
        }

        try (Admin admin = Admin.create(common)) {
            // Create with a config; describe the topic and its configs.
            NewTopic nt = new NewTopic(topic, partitions, (short) 1)
                .configs(Map.of("retention.ms", "86400000"));
            admin.createTopics(List.of(nt)).all().get();
            TopicDescription td = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            check(td.partitions().size() == partitions, "describeTopics partition count");
            check(td.topicId() != null, "describeTopics topic id");
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config cfg = admin.describeConfigs(List.of(res)).all().get().get(res);
            check("86400000".equals(cfg.get("retention.ms").value()), "describeConfigs retention.ms");
            // Incremental alter, read back.
            admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                new ConfigEntry("retention.ms", "172800000"), AlterConfigOp.OpType.SET)))).all().get();
            cfg = admin.describeConfigs(List.of(res)).all().get().get(res);
            check("172800000".equals(cfg.get("retention.ms").value()), "incrementalAlterConfigs");
            check(!admin.describeCluster().nodes().get().isEmpty(), "describeCluster nodes");

            // Idempotent producer, acks=all, zstd, explicit timestamps and headers.
            Properties pp = new Properties();
            pp.putAll(common);
            pp.put("enable.idempotence", "true");
            pp.put("acks", "all");
            pp.put("linger.ms", "5");
            pp.put("compression.type", "zstd");
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            long base = System.currentTimeMillis() - 60_000;
            List<Future<RecordMetadata>> sent = new ArrayList<>();
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                for (int i = 0; i < n; i++) {
                    // Timestamps rise with i, except record 450, which carries the maximum.
                    long ts = i == 450 ? base + 10 * n : base + i;
                    ProducerRecord<String, String> r = new ProducerRecord<>(
                        topic, i % partitions, ts, "key-" + i, "value-" + i,
                        List.of(new RecordHeader("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8))));
                    sent.add(producer.send(r));
                }
                producer.flush();
            }
            long[] next = new long[partitions];
            RecordMetadata maxMeta = null;
            for (int i = 0; i < n; i++) {
                RecordMetadata md = sent.get(i).get();
                check(md.partition() == i % partitions, "partition of record " + i);
                check(md.offset() == next[md.partition()], "offset of record " + i);
                next[md.partition()]++;
                if (i == 450) {
                    maxMeta = md;
                }
            }

            // Offsets: earliest, latest, max timestamp (KIP-734: the record that carries it).
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (int p = 0; p < partitions; p++) {
                latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
            }
            var ends = admin.listOffsets(latest).all().get();
            for (int p = 0; p < partitions; p++) {
                check(ends.get(new TopicPartition(topic, p)).offset() == n / partitions, "latest offset " + p);
            }
            TopicPartition maxTp = new TopicPartition(maxMeta.topic(), maxMeta.partition());
            var max = admin.listOffsets(Map.of(maxTp, OffsetSpec.maxTimestamp())).all().get().get(maxTp);
            check(max.offset() == maxMeta.offset(), "maxTimestamp offset " + max.offset() + " != " + maxMeta.offset());
            check(max.timestamp() == base + 10 * n, "maxTimestamp timestamp");

            // Consumer with manual assignment: everything back once, in order, with headers.
            Properties cp = new Properties();
            cp.putAll(common);
            cp.put("key.deserializer", StringDeserializer.class.getName());
            cp.put("value.deserializer", StringDeserializer.class.getName());
            cp.put("enable.auto.commit", "false");
            cp.put("auto.offset.reset", "none");
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                consumer.assign(tps);
                consumer.seekToBeginning(tps);
                boolean[] seen = new boolean[n];
                int got = 0;
                long deadline = System.currentTimeMillis() + 60_000;
                while (got < n) {
                    check(System.currentTimeMillis() < deadline, "read " + got + " of " + n + " in time");
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        int i = Integer.parseInt(r.value().substring("value-".length()));
                        check(!seen[i], "record " + i + " read once");
                        seen[i] = true;
                        check(r.key().equals("key-" + i), "key of record " + i);
                        check(r.offset() == i / partitions, "offset of record " + i);
                        check(new String(r.headers().lastHeader("i").value(), StandardCharsets.UTF_8)
                            .equals(Integer.toString(i)), "header of record " + i);
                        got++;
                    }
                }
                // Seek by timestamp.
                TopicPartition tp0 = tps.get(0);
                var found = consumer.offsetsForTimes(Map.of(tp0, base + 300)).get(tp0);
                check(found != null && found.offset() == 100, "offsetsForTimes on partition 0");
            }

            // DeleteRecords moves the log start offset.
            TopicPartition tp1 = new TopicPartition(topic, 1);
            admin.deleteRecords(Map.of(tp1, RecordsToDelete.beforeOffset(10))).all().get();
            var earliest = admin.listOffsets(Map.of(tp1, OffsetSpec.earliest())).all().get().get(tp1);
            check(earliest.offset() == 10, "earliest after deleteRecords");

            admin.deleteTopics(List.of(topic)).all().get();
        }
        System.out.println("java-client-check: ok (" + n + " records)");
    }
}
