"""confluent-kafka's Schema Registry client and serializers (Avro, Protobuf, JSON Schema)
against strom's registry (schema.registry.listener) and broker: produce and consume round
trips, evolving schemas, and a refused incompatible change."""

import json

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

avro = pytest.importorskip("confluent_kafka.schema_registry.avro")
json_schema = pytest.importorskip("confluent_kafka.schema_registry.json_schema")
protobuf = pytest.importorskip("confluent_kafka.schema_registry.protobuf")


def make_topic(strom, name):
    admin = AdminClient({"bootstrap.servers": strom.bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=30)


def round_trip(strom, topic, serializer, deserializer, values):
    """Produces every value through `serializer`, consumes them back through `deserializer`."""
    make_topic(strom, topic)
    p = Producer({"bootstrap.servers": strom.bootstrap})
    for v in values:
        p.produce(topic, value=serializer(v, SerializationContext(topic, MessageField.VALUE)))
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": strom.bootstrap, "group.id": f"g-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    for _ in range(200):
        if len(out) == len(values):
            break
        msg = c.poll(1)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        raw = msg.value()
        assert raw[0] == 0, "Confluent wire format: magic byte 0"
        out.append(deserializer(raw, SerializationContext(topic, MessageField.VALUE)))
    c.close()
    assert len(out) == len(values), f"{len(out)} of {len(values)} records came back"
    return out


def test_avro_round_trip_evolution_and_refusal(strom):
    sr = SchemaRegistryClient({"url": strom.registry_url})
    v1 = {"type": "record", "name": "User", "namespace": "demo",
          "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]}
    ser = avro.AvroSerializer(sr, json.dumps(v1))
    de = avro.AvroDeserializer(sr)
    values = [{"name": f"u{i}", "age": i} for i in range(10)]
    assert round_trip(strom, "avro-users", ser, de, values) == values
    versions = sr.get_versions("avro-users-value")
    assert versions == [1]
    first = sr.get_latest_version("avro-users-value")

    # v2 adds a field with a default: BACKWARD compatible, a new version with a new id.
    v2 = dict(v1, fields=v1["fields"] + [{"name": "email", "type": "string", "default": ""}])
    assert sr.test_compatibility("avro-users-value", Schema(json.dumps(v2), "AVRO"))
    ser2 = avro.AvroSerializer(sr, json.dumps(v2))
    p = Producer({"bootstrap.servers": strom.bootstrap})
    p.produce("avro-users", value=ser2({"name": "new", "age": 1, "email": "a@b"},
                                        SerializationContext("avro-users", MessageField.VALUE)))
    assert p.flush(30) == 0
    # A fresh client: the first one caches the latest version it saw.
    sr = SchemaRegistryClient({"url": strom.registry_url})
    latest = sr.get_latest_version("avro-users-value")
    assert latest.version == 2 and latest.schema_id != first.schema_id
    assert sr.get_versions("avro-users-value") == [1, 2]

    # v3 adds a field without a default: refused with 409.
    v3 = dict(v1, fields=v1["fields"] + [{"name": "phone", "type": "string"}])
    assert not sr.test_compatibility("avro-users-value", Schema(json.dumps(v3), "AVRO"))
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema("avro-users-value", Schema(json.dumps(v3), "AVRO"))
    assert e.value.http_status_code == 409 and e.value.error_code == 409
    # Under NONE the same schema is accepted.
    sr.set_compatibility("avro-users-value", "NONE")
    assert sr.register_schema("avro-users-value", Schema(json.dumps(v3), "AVRO")) > latest.schema_id
    assert sr.get_compatibility("avro-users-value") == "NONE"


def test_json_schema_round_trip_and_refusal(strom):
    sr = SchemaRegistryClient({"url": strom.registry_url})
    closed = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Order", "type": "object",
              "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
              "required": ["id"], "additionalProperties": False}
    ser = json_schema.JSONSerializer(json.dumps(closed), sr)
    de = json_schema.JSONDeserializer(None, schema_registry_client=sr)
    values = [{"id": i, "item": f"thing {i}"} for i in range(10)]
    assert round_trip(strom, "json-orders", ser, de, values) == values
    # Closed content model: adding an optional property is BACKWARD compatible.
    v2 = json.loads(json.dumps(closed))
    v2["properties"]["note"] = {"type": "string"}
    sr.register_schema("json-orders-value", Schema(json.dumps(v2), "JSON"))
    # Making it required is not.
    v3 = json.loads(json.dumps(v2))
    v3["required"] = ["id", "note"]
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema("json-orders-value", Schema(json.dumps(v3), "JSON"))
    assert e.value.error_code == 409
    assert sr.get_versions("json-orders-value") == [1, 2]


def _message_class(fields, name="Reading", package="demo", file="reading.proto"):
    """A Protobuf message class built at run time (no protoc here): fields are
    (name, number, type) with descriptor_pb2 type constants."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fd = descriptor_pb2.FileDescriptorProto(name=file, package=package, syntax="proto3")
    m = fd.message_type.add(name=name)
    for fname, number, ftype in fields:
        m.field.add(name=fname, number=number, type=ftype,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))


def test_protobuf_round_trip_and_refusal(strom):
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as F

    sr = SchemaRegistryClient({"url": strom.registry_url})
    Reading = _message_class([("sensor", 1, F.TYPE_STRING), ("value", 2, F.TYPE_DOUBLE)])
    ser = protobuf.ProtobufSerializer(Reading, sr, {"use.deprecated.format": False})
    de = protobuf.ProtobufDeserializer(Reading, {"use.deprecated.format": False})
    values = [Reading(sensor=f"s{i}", value=i / 2) for i in range(10)]
    got = round_trip(strom, "proto-readings", ser, de, values)
    assert [(m.sensor, m.value) for m in got] == [(m.sensor, m.value) for m in values]
    registered = sr.get_latest_version("proto-readings-value")
    assert registered.schema.schema_type == "PROTOBUF"

    # A new field is compatible; the registry answers its .proto text as a new version.
    v2 = 'syntax = "proto3";\npackage demo;\nmessage Reading {\n  string sensor = 1;\n  double value = 2;\n  int64 at = 3;\n}\n'
    sr.register_schema("proto-readings-value", Schema(v2, "PROTOBUF"))
    # Changing field 2 from double to string is not.
    v3 = 'syntax = "proto3";\npackage demo;\nmessage Reading {\n  string sensor = 1;\n  string value = 2;\n}\n'
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema("proto-readings-value", Schema(v3, "PROTOBUF"))
    assert e.value.error_code == 409
    assert sr.get_versions("proto-readings-value") == [1, 2]
