#!/usr/bin/env python3
"""Refreshes the replies of a golden transcript (commands.golden) from a real redis-server, so that
the expectations are Redis's, not ours. Every `> command` runs against the server, once over RESP2
and once over RESP3 from an empty keyspace (as the test runs it), and its reply is written as
commands.rs renders replies. `>! command` lines are Strata's own answers (kept as written, with
their reply lines, and not sent: they must not change the keyspace). Comments and blank lines are
kept.

Usage: redis_golden.py <port> commands.golden > refreshed && mv refreshed commands.golden
(FLUSHALL: use a scratch redis-server, e.g. `redis-server --port 16399 --save ''`.)"""

import socket
import sys


def encode(parts):
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        part = part.encode()
        out += b"$%d\r\n%s\r\n" % (len(part), part)
    return out


class Connection:
    def __init__(self, port, protocol):
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.buffer = b""
        if protocol == 3:
            self.call("HELLO 3")

    def line(self):
        while b"\r\n" not in self.buffer:
            self.buffer += self.socket.recv(65536)
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exactly(self, count):
        while len(self.buffer) < count + 2:
            self.buffer += self.socket.recv(65536)
        data, self.buffer = self.buffer[:count], self.buffer[count + 2 :]
        return data

    def reply(self):
        line = self.line()
        kind, text = chr(line[0]), line[1:]
        if kind == "+":
            return ("simple", text.decode())
        if kind == "-":
            return ("error", text.decode())
        if kind == ":":
            return ("integer", int(text))
        if kind == "_":
            return ("null",)
        if kind == "#":
            return ("boolean", text == b"t")
        if kind == ",":
            return ("double", text.decode())
        if kind in "$=":
            length = int(text)
            if length == -1:
                return ("null",)
            data = self.exactly(length)
            return ("bulk", data) if kind == "$" else ("verbatim", data)
        length = int(text)
        if length == -1:
            return ("null-array",)
        if kind == "%":
            return ("map", [(self.reply(), self.reply()) for _ in range(length)])
        return ({"*": "array", "~": "set", ">": "push"}[kind], [self.reply() for _ in range(length)])

    def call(self, text):
        self.socket.sendall(encode(text.split(" ")))
        return self.reply()


def escape(data):
    """As Rust's `escape_ascii`."""
    named = {"\t": "\\t", "\r": "\\r", "\n": "\\n", "'": "\\'", '"': '\\"', "\\": "\\\\"}
    out = ""
    for byte in data:
        char = chr(byte)
        if char in named:
            out += named[char]
        elif 0x20 <= byte < 0x7F:
            out += char
        else:
            out += "\\x%02x" % byte
    return out


def double(text):
    """As `format_double` (shortest form) for the values the transcript uses."""
    value = float(text)
    if value == int(value) and abs(value) < 1e17:
        return str(int(value))
    return text


def render(reply):
    kind = reply[0]
    if kind == "simple":
        return "+" + reply[1]
    if kind == "error":
        return "-" + reply[1]
    if kind == "integer":
        return ":%d" % reply[1]
    if kind == "null":
        return "nil"
    if kind == "null-array":
        return "nil-array"
    if kind == "boolean":
        return "#t" if reply[1] else "#f"
    if kind == "double":
        return "," + double(reply[1])
    if kind == "bulk":
        return '"%s"' % escape(reply[1])
    if kind == "verbatim":
        return '=%s:"%s"' % (reply[1][:3].decode(), escape(reply[1][4:]))
    if kind == "map":
        return "%{" + ", ".join("%s: %s" % (render(k), render(v)) for k, v in reply[1]) + "}"
    prefix = {"array": "", "set": "~", "push": ">"}[kind]
    return prefix + "[" + ", ".join(render(item) for item in reply[1]) + "]"


def main():
    port = int(sys.argv[1])
    lines = open(sys.argv[2]).read().splitlines()
    commands = [(index, line[2:]) for index, line in enumerate(lines) if line.startswith("> ")]
    replies = {}
    for protocol in (2, 3):
        connection = Connection(port, protocol)
        connection.call("FLUSHALL")
        for index, command in commands:
            replies.setdefault(index, []).append(render(connection.call(command)))
    out = []
    own = False
    for index, line in enumerate(lines):
        if line.startswith("> "):
            own = False
            out.append(line)
            resp2, resp3 = replies[index]
            out += [resp2] if resp2 == resp3 else ["resp2: " + resp2, "resp3: " + resp3]
        elif line.startswith(">! "):
            own = True
            out.append(line)
        elif line == "" or line.startswith("#"):
            own = False
            out.append(line)
        elif own:
            out.append(line)
    print("\n".join(out))


if __name__ == "__main__":
    main()
