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


def test_consumer_protocol_group_shares_partitions_and_is_described():
    """KIP-848: two members with group.protocol=consumer split a topic, every record once;
    the admin API lists the group as a consumer-type group and describes its members."""
    import time

    from confluent_kafka import ConsumerGroupType
    from conftest import Strom

    strom = Strom("group.consumer.heartbeat.interval.ms=300")
    try:
        admin = AdminClient({"bootstrap.servers": strom.bootstrap})
        admin.create_topics([NewTopic("ck848", num_partitions=6, replication_factor=1)])["ck848"].result(timeout=30)
        p = Producer({"bootstrap.servers": strom.bootstrap, "linger.ms": 5})
        for i in range(6000):
            p.produce("ck848", key=str(i), value=str(i), partition=i % 6)
        assert p.flush(30) == 0

        def member(name):
            c = Consumer({"bootstrap.servers": strom.bootstrap, "group.id": "ck848-group",
                          "group.protocol": "consumer", "client.id": name,
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
            c.subscribe(["ck848"])
            return c

        members = [member("ck-a"), member("ck-b")]
        seen = {}
        deadline = time.time() + 60
        while len(seen) < 6000 or any(len(c.assignment()) != 3 for c in members):
            assert time.time() < deadline, f"{len(seen)} records, assignments {[len(c.assignment()) for c in members]}"
            for n, c in enumerate(members):
                msg = c.poll(0.05)
                if msg is None or msg.error():
                    continue
                key = (msg.partition(), msg.offset())
                # Nothing is committed: a partition moved to the other member is read again
                # from the start, so only count the first reader of each record.
                seen.setdefault(key, n)
        assert sorted(seen) == sorted((i % 6, i // 6) for i in range(6000))
        owned = [{tp.partition for tp in c.assignment()} for c in members]
        assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(range(6))

        listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(timeout=30)
        assert [g.group_id for g in listed.valid] == ["ck848-group"]
        assert listed.valid[0].type == ConsumerGroupType.CONSUMER
        desc = admin.describe_consumer_groups(["ck848-group"])["ck848-group"].result(timeout=30)
        assert desc.type == ConsumerGroupType.CONSUMER
        assert sorted(m.client_id for m in desc.members) == ["ck-a", "ck-b"]
        assigned = sorted(tp.partition for m in desc.members for tp in m.assignment.topic_partitions)
        assert assigned == list(range(6))
        for c in members:
            c.close()
    finally:
        assert strom.stop() == 0
