#!/usr/bin/env python3
"""An independent reader of TensorBoard event files, Python's standard library only
(Debian has no tensorboard package): checks the TFRecord framing and both masked
CRC-32Cs of every record, decodes each tensorflow.Event, prints them as JSON.

    read_tfevents.py FILE [--dump-images DIR]  ->  [{"wall_time", "step", "file_version"?, "scalars"?: {tag: value},
                                  "images"?: {tag: {"height", "width", "sha256"}}, "texts"?: {tag: text}}, ...]
--dump-images writes each image summary's PNG bytes to DIR/<tag, "/" as "_">.png.
Exits 1 naming the record and the fault when a file is malformed.
"""
import hashlib
import json
import struct
import sys


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def fields(buf):
    """Yields (field number, wire type, value) of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire} of field {field}")
        yield field, wire, value


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


DUMP_DIR = None


def summary_value(buf, event):
    tag, image, tensor, plugin, simple = None, None, None, None, None
    for field, _, value in fields(buf):
        if field == 1:
            tag = value.decode()
        elif field == 2:
            simple = struct.unpack("<f", value)[0]
        elif field == 4:
            image = {f: v for f, _, v in fields(value)}
        elif field == 8:
            tensor = [(f, v) for f, _, v in fields(value)]
        elif field == 9:
            for f, _, v in fields(value):
                if f == 1:
                    plugin = dict((pf, pv) for pf, _, pv in fields(v)).get(1, b"").decode()
    if simple is not None:
        event.setdefault("scalars", {})[tag] = simple
    if image is not None:
        event.setdefault("images", {})[tag] = {"height": image[1], "width": image[2],
                                               "sha256": hashlib.sha256(image[4]).hexdigest()}
        if DUMP_DIR:
            with open(f"{DUMP_DIR}/{tag.replace('/', '_')}.png", "wb") as f:
                f.write(image[4])
    if tensor is not None and plugin == "text":
        strings = [v.decode() for f, v in tensor if f == 8]
        event.setdefault("texts", {})[tag] = strings[0] if strings else ""


def decode_event(data):
    event = {"step": 0}
    for field, _, value in fields(data):
        if field == 1:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif field == 2:
            event["step"] = value
        elif field == 3:
            event["file_version"] = value.decode()
        elif field == 5:
            for f, _, v in fields(value):
                if f == 1:
                    summary_value(v, event)
    return event


def read(path):
    data = open(path, "rb").read()
    events, i, n = [], 0, 0
    while i < len(data):
        if i + 12 > len(data):
            raise ValueError(f"record {n}: truncated header at byte {i}")
        header = data[i:i + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[i + 8:i + 12])
        if masked(header) != length_crc:
            raise ValueError(f"record {n}: length CRC mismatch at byte {i}")
        body = data[i + 12:i + 12 + length]
        if len(body) != length or i + 16 + length > len(data):
            raise ValueError(f"record {n}: truncated data at byte {i}")
        (body_crc,) = struct.unpack("<I", data[i + 12 + length:i + 16 + length])
        if masked(body) != body_crc:
            raise ValueError(f"record {n}: data CRC mismatch at byte {i}")
        events.append(decode_event(body))
        i += 16 + length
        n += 1
    return events


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--dump-images":
        DUMP_DIR = sys.argv[3]
    try:
        print(json.dumps(read(sys.argv[1])))
    except (ValueError, IndexError, struct.error) as e:
        print(f"{sys.argv[1]}: {e}", file=sys.stderr)
        sys.exit(1)
