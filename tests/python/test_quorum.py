"""DescribeQuorum and DescribeCluster read by kafka-python's admin client (an independent
decoder): a single node is a quorum of one, itself the leader."""

from kafka.admin import KafkaAdminClient


def test_describe_metadata_quorum_of_a_single_node(strom):
    admin = KafkaAdminClient(bootstrap_servers=strom.bootstrap)
    try:
        quorum = admin.describe_metadata_quorum()
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    (topic,) = quorum["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    (partition,) = topic["partitions"]
    assert partition["error"] is None
    assert partition["partition_index"] == 0
    assert partition["leader_id"] == 1
    assert partition["leader_epoch"] >= 1
    (voter,) = partition["current_voters"]
    assert voter["replica_id"] == 1
    assert voter["log_end_offset"] == partition["high_watermark"] > 0
    assert voter["last_caught_up_timestamp"] > 0
    assert partition["observers"] == []
    (node,) = quorum["nodes"]
    assert node["node_id"] == 1
    assert node["listeners"][0]["port"] == strom.port

    assert cluster["controller_id"] == 1
    assert [b["broker_id"] for b in cluster["brokers"]] == [1]
