"""kafka-python (a pure-Python client with its own protocol code) against strom."""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError


def test_admin_produce_consume(strom):
    admin = KafkaAdminClient(bootstrap_servers=strom.bootstrap, client_id="py-admin")
    admin.create_topics([NewTopic("py-events", num_partitions=3, replication_factor=1)])
    try:
        admin.create_topics([NewTopic("py-events", num_partitions=3, replication_factor=1)])
        raise AssertionError("creating an existing topic must fail")
    except TopicAlreadyExistsError:
        pass
    assert "py-events" in admin.list_topics()

    # kafka-python 3 producers are idempotent by default.
    producer = KafkaProducer(bootstrap_servers=strom.bootstrap, compression_type="gzip", linger_ms=5, acks="all")
    sent = {}
    for i in range(3000):
        p = i % 3
        meta = producer.send(
            "py-events", key=f"k{i}".encode(), value=f"value-{i}".encode() * 3,
            headers=[("idx", str(i).encode())], partition=p,
        ).get(timeout=30)
        sent.setdefault(p, []).append((meta.offset, i))
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=strom.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    parts = [TopicPartition("py-events", p) for p in range(3)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    got = {p: [] for p in range(3)}
    for msg in consumer:
        got[msg.partition].append(msg)
        if sum(len(v) for v in got.values()) == 3000:
            break
    consumer.close()
    for p in range(3):
        assert [m.offset for m in got[p]] == [o for o, _ in sent[p]], f"partition {p} offsets"
        for m, (_, i) in zip(got[p], sent[p]):
            assert m.key == f"k{i}".encode()
            assert m.value == f"value-{i}".encode() * 3
            assert m.headers == [("idx", str(i).encode())]

    end = KafkaConsumer(bootstrap_servers=strom.bootstrap).end_offsets(parts)
    assert sum(end.values()) == 3000
    admin.delete_topics(["py-events"])
    assert "py-events" not in admin.list_topics()
    admin.close()
