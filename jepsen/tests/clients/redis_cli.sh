#!/usr/bin/env bash
# Drives a Strata KV server with redis-cli: plain commands, inline and RESP3 (-3) modes, repeated
# commands (-r), mass insertion (--pipe) and a bad request. Usage: redis_cli.sh <port>.
set -euo pipefail
port="$1"
cli=(redis-cli -p "$port")
fail() { echo "redis-cli check failed: $*" >&2; exit 1; }
expect() { # expect <expected output> <redis-cli arguments...>
    local expected="$1"; shift
    local got
    got="$("${cli[@]}" "$@" 2>&1)"
    [[ "$got" == "$expected" ]] || fail "$* -> '$got', expected '$expected'"
}

expect "OK" flushall
expect "PONG" ping
expect "OK" set greeting hello
expect "hello" get greeting
expect "5" strlen greeting
expect "1" exists greeting
expect "string" type greeting
expect "(integer) -1" --no-raw ttl greeting
expect "OK" set counter 10 EX 100
expect "11" incr counter
expect "100" ttl counter
expect "" get missing
expect "ERR value is not an integer or out of range" incr greeting
expect "WRONGTYPE Operation against a key holding the wrong kind of value" lpush greeting x
expect "ERR unknown command 'nosuchcommand', with args beginning with: 'a' " nosuchcommand a
expect "ERR wrong number of arguments for 'get' command" get
expect "OK" select 0
expect "ERR DB index is out of range" select 1

# -r: repeat a command; --pipe: mass insertion of RESP-encoded commands.
"${cli[@]}" -r 100 incr repeated >/dev/null
expect "100" get repeated
for i in $(seq 1 1000); do
    printf '*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n' "${#i}" "$i" "${#i}" "$i"
done > /tmp/strata-kv-pipe.$$
out="$("${cli[@]}" --pipe < /tmp/strata-kv-pipe.$$)"
rm -f /tmp/strata-kv-pipe.$$
grep -q "errors: 0, replies: 1000" <<<"$out" || fail "--pipe: $out"
expect "1003" dbsize
expect "500" get 500

# RESP3 (-3): a map reply and a double.
out="$("${cli[@]}" -3 hello 3)"
grep -q "proto" <<<"$out" || fail "HELLO 3: $out"
"${cli[@]}" zadd board 1.5 alice >/dev/null
expect "(double) 1.5" -3 --no-raw zscore board alice
expect "1.5" zscore board alice

# Lists, hashes, sets through redis-cli.
expect "3" rpush list a b c
expect "$(printf 'a\nb\nc')" lrange list 0 -1
expect "1" hset hash field value
expect "$(printf 'field\nvalue')" hgetall hash
expect "2" sadd set x y
expect "2" scard set
# Newer commands: lex ranges, ZUNIONSTORE, LMPOP, BZPOPMIN (and its timeout), HRANDFIELD, OBJECT,
# WAIT. Keys of one command share a {hash tag}: the node has two shards.
expect "4" zadd "{c}lex" 0 a 0 b 0 c 0 d
expect "$(printf 'b\nc')" zrangebylex "{c}lex" "[b" "(d"
expect "2" zlexcount "{c}lex" - "[b"
expect "2" zadd "{c}other" 1 a 5 e
expect "5" zunionstore "{c}union" 2 "{c}lex" "{c}other" WEIGHTS 1 2
expect "$(printf 'b\n0\nc\n0\nd\n0\na\n2\ne\n10')" zrange "{c}union" 0 -1 WITHSCORES
expect "$(printf '{c}union\ne\n10')" bzpopmax "{c}union" "{c}lex" 1
expect "" bzpopmin "{c}empty" 0.1
expect "3" rpush "{c}list" a b c
expect "$(printf '{c}list\nc\nb')" lmpop 2 "{c}none" "{c}list" RIGHT COUNT 2
expect "$(printf 'field\nvalue')" hrandfield hash 1 WITHVALUES
expect "listpack" object encoding hash
expect "0" wait 0 0
expect "OK" flushdb
expect "0" dbsize
echo "redis-cli: ok"
