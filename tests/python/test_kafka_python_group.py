"""kafka-python's KafkaConsumer in a consumer group against strom: subscribe, consume, commit,
and a second consumer of the group resumes from the committed offsets."""

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def test_group_consume_commit_resume(strom):
    admin = KafkaAdminClient(bootstrap_servers=strom.bootstrap)
    admin.create_topics([NewTopic("py-group", num_partitions=2, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=strom.bootstrap, linger_ms=5)
    for i in range(200):
        producer.send("py-group", key=str(i).encode(), value=f"v{i}".encode(), partition=i % 2)
    producer.flush()
    producer.close()

    def consumer():
        return KafkaConsumer(
            "py-group", bootstrap_servers=strom.bootstrap, group_id="py-g", auto_offset_reset="earliest",
            enable_auto_commit=False, consumer_timeout_ms=15000, session_timeout_ms=10000,
        )

    first = consumer()
    got = []
    for msg in first:
        got.append((msg.partition, msg.offset))
        if len(got) == 120:
            break
    assert len(set(got)) == 120
    first.commit()
    committed = {p: first.committed(TopicPartition("py-group", p)) for p in range(2)}
    first.close()
    assert sum(committed.values()) == 120, committed

    second = consumer()
    rest = []
    for msg in second:
        rest.append((msg.partition, msg.offset))
        if len(rest) == 80:
            break
    second.commit()
    second.close()
    assert all(o >= committed[p] for p, o in rest), "the second consumer resumes at the committed offsets"
    assert set(got) | set(rest) == {(i % 2, i // 2) for i in range(200)}

    listed = admin.list_groups()
    assert "py-g" in repr(listed), listed
    offsets = admin.list_group_offsets("py-g")
    # {group: {TopicPartition: OffsetAndMetadata}}
    committed_by_admin = {(tp.topic, tp.partition): m.offset for tp, m in offsets["py-g"].items()}
    assert committed_by_admin == {("py-group", 0): 100, ("py-group", 1): 100}, offsets
    admin.close()
