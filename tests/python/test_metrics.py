"""The admin listener's /metrics output read by the official Prometheus parsers (the classic
text format parser and the OpenMetrics parser of prometheus-client), while confluent-kafka
produces and a consumer group reads."""

import time
import urllib.request

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus


def scrape(strom) -> tuple[str, str]:
    with urllib.request.urlopen(strom.admin_url + "/metrics", timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def samples(families, name, **labels):
    return [
        s.value
        for f in families
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_metrics_parse_and_count(strom):
    admin = AdminClient({"bootstrap.servers": strom.bootstrap})
    topics = [NewTopic("pm", num_partitions=2, replication_factor=1),
              NewTopic("pm-compacted", num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"})]
    for f in admin.create_topics(topics).values():
        f.result(timeout=30)
    errors = []
    p = Producer({"bootstrap.servers": strom.bootstrap, "linger.ms": 5})
    for i in range(2000):
        p.produce("pm", key=str(i), value=b"x" * 50, partition=i % 2,
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(30) == 0
    assert not errors, errors

    c = Consumer({"bootstrap.servers": strom.bootstrap, "group.id": "pm-group",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["pm"])
    got = 0
    deadline = time.time() + 60
    while got < 2000:
        assert time.time() < deadline, f"only {got} records arrived"
        msg = c.poll(1)
        if msg is not None and msg.error() is None:
            got += 1
    c.commit(asynchronous=False)

    content_type, text = scrape(strom)
    assert content_type.startswith("application/openmetrics-text")
    om = list(parse_openmetrics(text))
    prom = list(parse_prometheus(text))
    names = {f.name for f in om}
    for family in ["strom_requests", "strom_request_total_time_seconds", "strom_topic_messages_in",
                   "strom_partition_log_end_offset", "strom_consumer_group_lag",
                   "strom_under_replicated_partitions", "strom_connections", "strom_groups"]:
        assert family in names, family
    for families in (om, prom):
        assert samples(families, "strom_topic_messages_in_total", topic="pm") == [2000.0]
        assert sum(samples(families, "strom_partition_log_end_offset", topic="pm")) == 2000.0
        assert samples(families, "strom_consumer_group_lag", group="pm-group") == [0.0, 0.0]
    hist = next(f for f in om if f.name == "strom_request_total_time_seconds")
    assert hist.type == "histogram"
    c.close()
    check_dashboard(text)


def check_dashboard(text):
    """deploy/grafana/strom.json must not query a metric the broker does not export."""
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "deploy" / "grafana" / "strom.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v.get("definition", "") for v in dashboard["templating"]["list"]]
    used = {re.sub(r"_(bucket|total|count|sum)$", "", m) for e in exprs for m in re.findall(r"strom_[a-z_]+", e)}
    assert len(used) > 15
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert used <= exported, sorted(used - exported)
    prometheus_yml = (root / "deploy" / "prometheus.yml").read_text()
    assert "127.0.0.1:9644" in prometheus_yml, "scrapes the default admin.listener"

