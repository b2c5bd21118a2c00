"""Transactions from two independent client implementations: kafka-python (its own protocol
code) and confluent-kafka (librdkafka). Committed records are visible to read_committed
consumers, aborted ones are not, and read_uncommitted consumers see both."""

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def kp_read(strom, topic, isolation, expected):
    consumer = KafkaConsumer(bootstrap_servers=strom.bootstrap, isolation_level=isolation,
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    parts = [KTopicPartition(topic, p) for p in range(2)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    values = []
    for msg in consumer:
        values.append(msg.value.decode())
        if len(values) == expected:
            break
    consumer.close()
    return values


def test_kafka_python_transactions(strom):
    admin = KafkaAdminClient(bootstrap_servers=strom.bootstrap)
    admin.create_topics([NewTopic("py-txn", num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=strom.bootstrap, transactional_id="py-tx", linger_ms=5)
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(40):
        producer.send("py-txn", key=str(i).encode(), value=f"commit-{i}".encode(), partition=i % 2)
    producer.commit_transaction()
    producer.begin_transaction()
    for i in range(25):
        producer.send("py-txn", key=str(i).encode(), value=f"abort-{i}".encode(), partition=i % 2)
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    for i in range(10):
        producer.send("py-txn", key=str(i).encode(), value=f"again-{i}".encode(), partition=i % 2)
    producer.commit_transaction()
    producer.close()

    committed = kp_read(strom, "py-txn", "read_committed", 50)
    assert len(committed) == 50, committed
    assert not [v for v in committed if v.startswith("abort-")]
    everything = kp_read(strom, "py-txn", "read_uncommitted", 75)
    assert len(everything) == 75
    assert len([v for v in everything if v.startswith("abort-")]) == 25


def test_confluent_kafka_transactions_with_offsets(strom):
    admin = KafkaAdminClient(bootstrap_servers=strom.bootstrap)
    admin.create_topics([NewTopic("ck-txn-in", num_partitions=2, replication_factor=1),
                         NewTopic("ck-txn-out", num_partitions=2, replication_factor=1)])
    source = Producer({"bootstrap.servers": strom.bootstrap})
    for i in range(100):
        source.produce("ck-txn-in", value=f"in-{i}", partition=i % 2)
    assert source.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": strom.bootstrap, "group.id": "ck-txn-group",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.assign([TopicPartition("ck-txn-in", p, OFFSET_BEGINNING) for p in range(2)])
    producer = Producer({"bootstrap.servers": strom.bootstrap, "transactional.id": "ck-tx"})
    producer.init_transactions(30)
    done = attempts = 0
    while done < 100:
        msg = consumer.poll(10)
        assert msg is not None and msg.error() is None
        attempts += 1
        producer.begin_transaction()
        producer.produce("ck-txn-out", value=msg.value() + b":t", partition=msg.partition())
        producer.send_offsets_to_transaction(
            [TopicPartition("ck-txn-in", msg.partition(), msg.offset() + 1)],
            consumer.consumer_group_metadata(), 30)
        if attempts % 7 == 0:
            # Aborted: neither the output nor the offset counts; the record is read again.
            producer.abort_transaction(30)
            consumer.seek(TopicPartition("ck-txn-in", msg.partition(), msg.offset()))
            continue
        producer.commit_transaction(30)
        done += 1
    consumer.close()
    assert attempts > 100

    # The group's committed offsets are those of the committed transactions: the end.
    check = Consumer({"bootstrap.servers": strom.bootstrap, "group.id": "ck-txn-group"})
    committed = check.committed([TopicPartition("ck-txn-in", p) for p in range(2)], timeout=10)
    check.close()
    assert [tp.offset for tp in committed] == [50, 50]

    out = Consumer({"bootstrap.servers": strom.bootstrap, "group.id": "ck-txn-reader",
                    "isolation.level": "read_committed", "enable.auto.commit": False})
    out.assign([TopicPartition("ck-txn-out", p, OFFSET_BEGINNING) for p in range(2)])
    values = []
    while len(values) < 100:
        msg = out.poll(10)
        assert msg is not None, f"only {len(values)} committed outputs"
        assert msg.error() is None
        values.append(msg.value().decode())
    extra = out.poll(2)
    out.close()
    assert extra is None, extra.value()
    assert sorted(values) == sorted(f"in-{i}:t" for i in range(100))
