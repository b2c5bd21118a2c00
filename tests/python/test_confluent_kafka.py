"""confluent-kafka (the Python binding of librdkafka from PyPI) against strom."""

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic


def test_produce_consume_every_codec(strom):
    admin = AdminClient({"bootstrap.servers": strom.bootstrap})
    codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
    futures = admin.create_topics([NewTopic(f"ck-{c}", num_partitions=2, replication_factor=1) for c in codecs])
    for f in futures.values():
        f.result(timeout=30)
    md = admin.list_topics(timeout=10)
    assert all(f"ck-{c}" in md.topics for c in codecs)
    assert len(md.brokers) == 1

    for codec in codecs:
        topic = f"ck-{codec}"
        errors = []
        p = Producer({"bootstrap.servers": strom.bootstrap, "compression.codec": codec, "linger.ms": 5})
        for i in range(5000):
            p.produce(topic, key=str(i), value=(f"{codec}-{i}-" * 5).encode(), partition=i % 2,
                      headers={"n": str(i)}, on_delivery=lambda err, msg: err and errors.append(err))
            if i % 1000 == 0:
                p.poll(0)
        assert p.flush(30) == 0
        assert not errors, errors

        c = Consumer({"bootstrap.servers": strom.bootstrap, "group.id": "ck", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in range(2)])
        seen = {0: [], 1: []}
        while sum(len(v) for v in seen.values()) < 5000:
            msg = c.poll(10)
            assert msg is not None, f"{codec}: only {sum(len(v) for v in seen.values())} records arrived"
            assert msg.error() is None, msg.error()
            seen[msg.partition()].append(msg)
        c.close()
        for part, msgs in seen.items():
            assert [m.offset() for m in msgs] == list(range(2500))
            for j, m in enumerate(msgs):
                i = j * 2 + part
                assert m.key() == str(i).encode()
                assert m.value() == (f"{codec}-{i}-" * 5).encode()
                assert m.headers() == [("n", str(i).encode())]
