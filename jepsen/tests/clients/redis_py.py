#!/usr/bin/env python3
"""Drives a Strata KV server with redis-py: RESP2 and RESP3, pipelines, transactions with WATCH,
pub/sub, blocking pops (lists and sorted sets), expiry, every data type. Usage: redis_py.py <port>. Exits non-zero on the
first failed check (an AssertionError with the check's line)."""

import sys
import threading
import time

import redis


def pairs(reply):
    """Member/score pairs as tuples (RESP3 gives lists, RESP2 tuples)."""
    if reply and not isinstance(reply[0], (list, tuple)):
        reply = [reply[i : i + 2] for i in range(0, len(reply), 2)]
    return [tuple(pair) for pair in reply]


def check(port, protocol):
    r = redis.Redis(port=port, protocol=protocol, decode_responses=True)
    tag = f"{{p{protocol}}}"  # one hash tag: every key of this run in one shard
    k = lambda name: f"{tag}{name}"
    assert r.ping() is True
    assert r.echo("hi") == "hi"
    r.flushall()
    assert r.dbsize() == 0

    # strings
    assert r.set(k("s"), "v") is True
    assert r.get(k("s")) == "v"
    assert r.get(k("missing")) is None
    assert r.set(k("s"), "w", nx=True) is None
    assert r.set(k("s"), "w", xx=True, get=True) == "v"
    assert r.execute_command("SET", k("s"), "x", "IFEQ", "w") is True
    assert r.execute_command("SET", k("s"), "y", "IFEQ", "nope") is None
    assert r.get(k("s")) == "x"
    assert r.incr(k("n")) == 1
    assert r.incrby(k("n"), 41) == 42
    assert r.decr(k("n")) == 41
    assert r.incrbyfloat(k("f"), 10.5) == 10.5
    assert r.incrbyfloat(k("f"), 0.1) == 10.6
    assert r.get(k("f")) == "10.6"
    assert r.append(k("s"), "yz") == 3
    assert r.strlen(k("s")) == 3
    assert r.getrange(k("s"), 0, 1) == "xy"
    assert r.setrange(k("s"), 1, "AB") == 3
    assert r.get(k("s")) == "xAB"
    assert r.mset({k("a"): "1", k("b"): "2"}) is True
    assert r.mget([k("a"), k("b"), k("zz")]) == ["1", "2", None]
    assert r.msetnx({k("a"): "9", k("c"): "3"}) is False
    assert r.getset(k("a"), "10") == "1"
    assert r.getdel(k("a")) == "10"
    assert r.exists(k("a")) == 0
    try:
        r.incr(k("s"))
        raise AssertionError("INCR of a non-integer must fail")
    except redis.ResponseError as error:
        assert "not an integer" in str(error)

    # keys and expiry
    assert r.set(k("e"), "v", ex=100) is True
    assert 99 <= r.ttl(k("e")) <= 100
    assert r.pttl(k("e")) > 98000
    assert r.expiretime(k("e")) > time.time()
    assert r.persist(k("e")) is True
    assert r.ttl(k("e")) == -1
    assert r.ttl(k("missing")) == -2
    assert r.pexpire(k("e"), 100) is True
    assert r.expire(k("e"), 1000, gt=True) is True
    assert r.expire(k("e"), 5, gt=True) is False
    assert r.pexpire(k("e"), 150) is True
    assert r.set(k("px"), "v", px=100) is True
    time.sleep(0.3)
    assert r.get(k("e")) is None
    assert r.get(k("px")) is None
    assert r.exists(k("e")) == 0
    assert r.type(k("s")) == "string"
    assert r.rename(k("s"), k("s2")) is True
    assert r.get(k("s2")) == "xAB"
    assert r.renamenx(k("s2"), k("b")) is False
    assert r.copy(k("s2"), k("s3")) is True
    assert r.get(k("s3")) == "xAB"
    assert r.delete(k("s3"), k("nothing")) == 1
    assert sorted(r.keys(k("*"))) == sorted([k("b"), k("f"), k("n"), k("s2")])
    # Keys over every shard: MSET per key (different slots), then KEYS, SCAN, DEL across shards.
    many = [f"key:{i}" for i in range(50)]
    for name in many:
        r.set(name, name)
    assert set(many) <= set(r.keys("key:*"))
    assert set(r.scan_iter(match="key:*", count=7)) == set(many)
    assert set(r.scan_iter(match="key:*", _type="string")) == set(many)
    assert r.mget(many[:5]) == many[:5]
    assert r.exists(*many) == 50
    assert r.delete(*many) == 50
    assert r.randomkey() is not None

    # hashes
    assert r.hset(k("h"), mapping={"a": "1", "b": "2"}) == 2
    assert r.hget(k("h"), "a") == "1"
    assert r.hgetall(k("h")) == {"a": "1", "b": "2"}
    assert r.hincrby(k("h"), "a", 5) == 6
    assert r.hincrbyfloat(k("h"), "b", 0.5) == 2.5
    assert r.hlen(k("h")) == 2
    assert sorted(r.hkeys(k("h"))) == ["a", "b"]
    assert r.hmget(k("h"), ["a", "x"]) == ["6", None]
    assert r.hexists(k("h"), "a") is True
    assert r.hdel(k("h"), "a", "x") == 1
    assert dict(r.hscan_iter(k("h"))) == {"b": "2.5"}
    # Many calls: the cursors are large integers the client sends back.
    big = {f"f{index:05}": str(index) for index in range(3000)}
    assert r.hset(k("big-hash"), mapping=big) == 3000
    assert dict(r.hscan_iter(k("big-hash"), count=100)) == big
    assert r.sadd(k("big-set"), *big) == 3000
    assert sorted(r.sscan_iter(k("big-set"), count=100)) == sorted(big)
    assert r.zadd(k("big-zset"), {field: int(value) for field, value in big.items()}) == 3000
    scores = {field: float(value) for field, value in big.items()}
    assert dict(r.zscan_iter(k("big-zset"), count=100)) == scores
    cursor, _ = r.hscan(k("big-hash"), 0, count=10)
    assert cursor > 1 << 40
    assert r.hrandfield(k("h")) == "b"
    assert r.hrandfield(k("h"), 3) == ["b"]
    assert pairs(r.hrandfield(k("h"), -2, withvalues=True)) == [("b", "2.5"), ("b", "2.5")]
    assert r.object("encoding", k("h")) == "listpack"
    try:
        r.lpush(k("h"), "x")
        raise AssertionError("LPUSH on a hash must fail")
    except redis.ResponseError as error:
        assert str(error).startswith("WRONGTYPE")

    # lists
    assert r.rpush(k("l"), "a", "b", "c") == 3
    assert r.lpush(k("l"), "z") == 4
    assert r.lrange(k("l"), 0, -1) == ["z", "a", "b", "c"]
    assert r.lpop(k("l")) == "z"
    assert r.rpop(k("l"), 2) == ["c", "b"]
    assert r.linsert(k("l"), "AFTER", "a", "q") == 2
    assert r.lindex(k("l"), -1) == "q"
    assert r.lpos(k("l"), "q") == 1
    assert r.lmove(k("l"), k("l2"), "LEFT", "RIGHT") == "a"
    assert r.llen(k("l")) == 1
    assert r.lrange(k("l2"), 0, -1) == ["a"]

    # sets
    assert r.sadd(k("set"), "a", "b", "c") == 3
    assert r.smembers(k("set")) == {"a", "b", "c"}
    assert r.sismember(k("set"), "a") in (True, 1)
    assert r.sadd(k("set2"), "b", "c", "d") == 3
    assert r.sinter(k("set"), k("set2")) == {"b", "c"}
    assert r.sunionstore(k("set3"), [k("set"), k("set2")]) == 4
    assert r.sdiff(k("set"), k("set2")) == {"a"}
    assert r.scard(k("set3")) == 4
    assert r.srem(k("set3"), "a") == 1
    assert set(r.sscan_iter(k("set3"))) == {"b", "c", "d"}
    assert r.sintercard(2, [k("set"), k("set2")]) == 2
    assert r.sintercard(2, [k("set"), k("set2")], limit=1) == 1
    assert r.smismember(k("set"), ["a", "zz"]) == [1, 0]
    assert set(r.srandmember(k("set"), -5)) <= {"a", "b", "c"}

    # sorted sets
    assert r.zadd(k("z"), {"a": 1, "b": 2, "c": 3}) == 3
    assert r.zscore(k("z"), "b") == 2.0
    assert pairs(r.zrange(k("z"), 0, -1, withscores=True)) == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert r.zincrby(k("z"), 2.5, "a") == 3.5
    assert r.zrangebyscore(k("z"), "(2", "+inf") == ["c", "a"]
    assert r.zrank(k("z"), "c") == 1
    assert r.zrevrange(k("z"), 0, 0) == ["a"]
    assert r.zcount(k("z"), "-inf", "+inf") == 3
    assert pairs(r.zpopmin(k("z"))) == [("b", 2.0)]
    assert r.zrem(k("z"), "a") == 1
    assert r.zcard(k("z")) == 1

    # sorted sets: lexicographical ranges, unions and intersections, pops over several keys
    assert r.zadd(k("lex"), {"a": 0, "b": 0, "c": 0, "d": 0}) == 4
    assert r.zrangebylex(k("lex"), "[b", "+") == ["b", "c", "d"]
    assert r.zrangebylex(k("lex"), "-", "+", start=1, num=2) == ["b", "c"]
    assert r.zrevrangebylex(k("lex"), "(d", "-") == ["c", "b", "a"]
    assert r.zlexcount(k("lex"), "[b", "[c") == 2
    assert r.zrange(k("lex"), "[c", "+", bylex=True) == ["c", "d"]
    assert r.zrangestore(k("lex2"), k("lex"), "(a", "[c", bylex=True) == 2
    assert r.zremrangebylex(k("lex"), "-", "(c") == 2
    assert r.zrange(k("lex"), 0, -1) == ["c", "d"]
    assert r.zadd(k("za"), {"x": 1, "y": 2}) == 2
    assert r.zadd(k("zb"), {"y": 10, "w": 20}) == 2
    assert r.zunionstore(k("zu"), {k("za"): 1, k("zb"): 2}) == 3
    assert pairs(r.zrange(k("zu"), 0, -1, withscores=True)) == [("x", 1), ("y", 22), ("w", 40)]
    assert r.zinterstore(k("zi"), [k("za"), k("zb")], aggregate="MAX") == 1
    assert r.zscore(k("zi"), "y") == 10.0
    assert pairs(r.zunion([k("za"), k("zb")], withscores=True)) == [("x", 1), ("y", 12), ("w", 20)]
    assert r.zinter([k("za"), k("zb")]) == ["y"]
    assert r.zdiff([k("za"), k("zb")]) == ["x"]
    assert r.zintercard(2, [k("za"), k("zb")]) == 1
    key, popped = r.zmpop(2, [k("missing"), k("za")], min=True, count=5)
    assert key == k("za") and [(m, float(s)) for m, s in popped] == [("x", 1), ("y", 2)], popped
    assert r.zmpop(1, [k("za")], max=True) is None
    key, popped = r.bzmpop(1, 2, [k("missing"), k("zb")], max=True)
    assert key == k("zb") and [(m, float(s)) for m, s in popped] == [("w", 20)], popped
    assert r.object("encoding", k("zb")) == "listpack"

    # lists: LMPOP and BLMPOP
    assert r.rpush(k("lm"), "a", "b", "c") == 3
    assert r.lmpop(2, k("missing"), k("lm"), direction="RIGHT", count=2) == [k("lm"), ["c", "b"]]
    assert r.blmpop(1, 1, k("lm"), direction="LEFT") == [k("lm"), ["a"]]
    assert r.lmpop(1, k("lm"), direction="LEFT") is None

    # pipelines (no transaction)
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(k(f"p{i}"), i)
    for i in range(100):
        pipe.get(k(f"p{i}"))
    results = pipe.execute()
    assert results[:100] == [True] * 100
    assert results[100:] == [str(i) for i in range(100)]

    # transactions
    pipe = r.pipeline(transaction=True)
    pipe.set(k("t"), "1").incr(k("t")).get(k("t"))
    assert pipe.execute() == [True, 2, "2"]
    # WATCH: a concurrent change aborts EXEC.
    other = redis.Redis(port=port, protocol=protocol, decode_responses=True)
    with r.pipeline() as pipe:
        pipe.watch(k("t"))
        assert pipe.get(k("t")) == "2"
        other.set(k("t"), "changed")
        pipe.multi()
        pipe.set(k("t"), "mine")
        try:
            pipe.execute()
            raise AssertionError("EXEC after a watched key changed must abort")
        except redis.WatchError:
            pass
    assert r.get(k("t")) == "changed"
    # WATCH with no interference commits.
    with r.pipeline() as pipe:
        pipe.watch(k("t"))
        pipe.multi()
        pipe.set(k("t"), "mine")
        assert pipe.execute() == [True]
    assert r.get(k("t")) == "mine"
    # A transaction over two shards is refused.
    pipe = r.pipeline(transaction=True)
    pipe.set("{a}x", 1).set("{b}y", 2)
    try:
        pipe.execute()
        raise AssertionError("a cross-shard transaction must fail")
    except redis.ResponseError as error:
        assert "CROSSSLOT" in str(error) or "EXECABORT" in str(error)

    # pub/sub
    pubsub = other.pubsub()
    pubsub.subscribe(k("chan"))
    pubsub.psubscribe(k("pat*"))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
    assert r.publish(k("chan"), "hello") == 1
    assert r.publish(k("pattern"), "world") == 1
    message = pubsub.get_message(timeout=2)
    assert message["type"] == "message" and message["data"] == "hello", message
    message = pubsub.get_message(timeout=2)
    assert message["type"] == "pmessage" and message["data"] == "world", message
    pubsub.close()

    # blocking pops: one waits, another pushes.
    def push_later():
        time.sleep(0.3)
        redis.Redis(port=port, protocol=protocol).rpush(k("bl"), "late")

    thread = threading.Thread(target=push_later)
    thread.start()
    started = time.time()
    popped = r.blpop([k("bl")], timeout=5)
    assert popped in ((k("bl"), "late"), [k("bl"), "late"]), popped
    assert time.time() - started < 4
    thread.join()
    started = time.time()
    assert r.blpop([k("bl")], timeout=0.3) is None
    assert time.time() - started >= 0.25
    r.rpush(k("bl"), "x")
    assert r.blmove(k("bl"), k("bl2"), 1, "LEFT", "LEFT") == "x"
    # BZPOPMIN: woken by a ZADD of another client, or timing out.
    def zadd_later():
        time.sleep(0.3)
        redis.Redis(port=port, protocol=protocol).zadd(k("bz"), {"late": 7})

    thread = threading.Thread(target=zadd_later)
    thread.start()
    started = time.time()
    popped = r.bzpopmin([k("bz")], timeout=5)
    assert tuple(popped) == (k("bz"), "late", 7.0), popped
    assert time.time() - started < 4
    thread.join()
    started = time.time()
    assert r.bzpopmax([k("bz")], timeout=0.3) is None
    assert time.time() - started >= 0.25
    assert r.blmpop(0.2, 1, k("bz"), direction="LEFT") is None

    # connection and server commands
    assert r.client_setname("tester") is True
    assert r.client_getname() == "tester"
    assert isinstance(r.client_id(), int)
    assert any(client["name"] == "tester" for client in r.client_list())
    assert r.info("server")["redis_version"] == "7.2.0"
    assert "connected_clients" in r.info("clients")
    assert r.config_get("maxclients") == {"maxclients": "10000"}
    assert r.config_get("no-such-setting") == {}
    assert len(r.time()) == 2
    assert r.command_count() > 100
    assert r.execute_command("SELECT", 0) in ("OK", True, b"OK")
    # Every acknowledged write is on a majority already: WAIT answers at once.
    assert r.wait(1, 100) == 1
    assert r.swapdb(0, 0) is True
    try:
        r.swapdb(0, 1)
        raise AssertionError("SWAPDB with database 1 must fail")
    except redis.ResponseError as error:
        assert "out of range" in str(error)
    r.flushdb()
    assert r.dbsize() == 0
    print(f"redis-py RESP{protocol}: ok")


def main():
    port = int(sys.argv[1])
    for protocol in (2, 3):
        check(port, protocol)


if __name__ == "__main__":
    main()
