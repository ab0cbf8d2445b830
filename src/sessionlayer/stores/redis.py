"""``RedisStore``: session records in Redis, shared by the server nodes of a cluster.

Needs the ``redis`` extra (``pip install 'sessionlayer[redis]'``, redis-py 5 or later).
The keys, under a configurable prefix (``sessionlayer:`` by default):

- ``<prefix>session:<id>``: one hash per session, one field per record field, each
  JSON-encoded (:mod:`.records`);
- ``<prefix>detached``: a sorted set of the ids of the records with a deadline (detached
  sessions, and attached ones under their node's lease) by ``expires_at``,
  what :meth:`RedisStore.expire` reads;
- ``<prefix>secret``: the server secret (hex), as versions before kept it;
  ``<prefix>secret:born``: when the node that made it made it (its wall clock; absent: an
  older version made it, which counts as first); ``<prefix>secret:previous``: the one
  before it (hex), whose tokens are still good.

The secret is created once, by the first node to ask, and asserted again by every node at
each :meth:`RedisStore.refresh_secret` (a server calls it every ``lease / 3``), in one
script: a Redis that lost its data (restarted without persistence) gets the nodes' secret
back, and if a node started meanwhile made another, the one made first wins and the other
becomes the one before.  So every node signs with one secret again within a renewal each,
and still takes the tokens issued with the other.

A record with a deadline (a detached session's, or an attached one's lease) also gets a
Redis TTL ``grace`` seconds after it, so that Redis removes it even when no server runs
:meth:`~RedisStore.expire`.  ``advance``, ``update``, ``put_unless_taken``, a conditional
``delete``, ``renew``, ``expire`` and the secret's are Lua scripts, so each is atomic
whatever the other nodes do.

Every call is bounded: connecting and each reply wait at most ``timeout`` seconds (and
are not retried), then raise :class:`~sessionlayer.errors.StoreUnavailable`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
import re
import secrets
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from ..errors import StoreUnavailable
from . import records
from .base import KEEP, Checkpoint, Keep, SessionRecord

__all__ = ["RedisStore", "TTL_END_MAX"]

#: The latest TTL end (Unix time, ms) given to Redis: 2**53 - 1, some 285,000 years from
#: 1970, exact in the Lua scripts' doubles and well inside what PEXPIREAT takes.
TTL_END_MAX = 2**53 - 1

# What _WRITE and _DELETE check first.  KEYS[1]: the session's hash.  ARGV[2]: the
# generation it must hold ("" for any, but it must exist); ARGV[3]: the node it must hold
# (JSON-encoded, as the field is; "" for any).
_CHECK = """
local function holds(key)
  if ARGV[2] == '' then
    if redis.call('EXISTS', key) == 0 then return false end
  elseif redis.call('HGET', key, 'generation') ~= ARGV[2] then
    return false
  end
  return ARGV[3] == '' or redis.call('HGET', key, 'node') == ARGV[3]
end
"""

# KEYS: the session's hash, the detached set.  ARGV: the id; the generation and the node
# the hash must hold (_CHECK); the deadline ("keep", "none" or the score); the TTL's end in
# ms since the epoch; then field, value pairs to set.  Returns the hash as it was written
# (before its TTL, in case the TTL's end has already passed), or nil.
_WRITE = _CHECK + """
local key, detached, id = KEYS[1], KEYS[2], ARGV[1]
if not holds(key) then return false end
if #ARGV > 5 then redis.call('HSET', key, unpack(ARGV, 6)) end
local written = redis.call('HGETALL', key)
if ARGV[4] == 'none' then
  redis.call('ZREM', detached, id)
  redis.call('PERSIST', key)
elseif ARGV[4] ~= 'keep' then
  redis.call('ZADD', detached, ARGV[4], id)
  redis.call('PEXPIREAT', key, ARGV[5])
end
return written
"""

# KEYS: the session's hash, the detached set.  ARGV: the id; the generation it must hold;
# the node (JSON); the deadline ("none" or the score); the TTL's end in ms since the epoch;
# the deadline's field (JSON).  At that generation: the next one, held by the node, attached,
# the tokens from the oldest one taken so far on still taken (heard_at: the one it had, or
# the one before for an older version's previous_ok alone, or this generation); returns the
# hash as it was written.  Else nil.
_ADVANCE = """
local key, detached, id = KEYS[1], KEYS[2], ARGV[1]
if redis.call('HGET', key, 'generation') ~= ARGV[2] then return false end
local generation = tonumber(ARGV[2])
local heard = ARGV[2]
if redis.call('HGET', key, 'previous_ok') == 'true' then
  heard = redis.call('HGET', key, 'heard_at')
  if not heard or heard == 'null' then
    heard = tostring(math.max(generation - 1, 0))
  end
end
redis.call('HSET', key, 'generation', tostring(generation + 1), 'node', ARGV[3],
  'expires_at', ARGV[6], 'detached', 'false', 'previous_ok', 'true', 'heard_at', heard)
local written = redis.call('HGETALL', key)
if ARGV[4] == 'none' then
  redis.call('ZREM', detached, id)
  redis.call('PERSIST', key)
else
  redis.call('ZADD', detached, ARGV[4], id)
  redis.call('PEXPIREAT', key, ARGV[5])
end
return written
"""

# KEYS: the session's hash, the detached set.  ARGV: the id; the record's generation and
# node (JSON); its deadline ("none" or the score); the TTL's end in ms since the epoch; then
# its field, value pairs.  Unless the stored hash is at a greater generation, or at the same
# one and holds another node (SessionRecord.bars), writes the record whole as put does and
# returns nil; else returns the stored hash.
_PUT_UNLESS_TAKEN = """
local key, detached, id = KEYS[1], KEYS[2], ARGV[1]
if redis.call('EXISTS', key) == 1 then
  local node = redis.call('HGET', key, 'node')
  local generation = tonumber(redis.call('HGET', key, 'generation')) or -1
  if generation > tonumber(ARGV[2]) or (generation == tonumber(ARGV[2])
      and node and node ~= 'null' and node ~= ARGV[3]) then
    return redis.call('HGETALL', key)
  end
end
redis.call('DEL', key)
redis.call('HSET', key, unpack(ARGV, 6))
if ARGV[4] == 'none' then
  redis.call('ZREM', detached, id)
else
  redis.call('ZADD', detached, ARGV[4], id)
  redis.call('PEXPIREAT', key, ARGV[5])
end
return false
"""

# KEYS: the session's hash, the detached set.  ARGV: the id, then as _CHECK.  Returns 1 if
# the hash was removed, else 0.
_DELETE = _CHECK + """
if not holds(KEYS[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: the deadline set, then the hashes of the ids in ARGV[4:].  ARGV: the node (JSON),
# the new deadline (the score and the field's JSON), the TTL's end (ms).  Renews those the
# node holds attached (not detached: their deadline is a resume's); returns their ids.  A
# key that holds no hash (not a record) is passed over: one does not fail the batch.
_RENEW = """
local renewed = {}
for i = 2, #KEYS do
  local id = ARGV[i + 2]
  if redis.call('TYPE', KEYS[i]).ok == 'hash'
      and redis.call('HGET', KEYS[i], 'node') == ARGV[1]
      and redis.call('HGET', KEYS[i], 'detached') ~= 'true' then
    redis.call('HSET', KEYS[i], 'expires_at', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('PEXPIREAT', KEYS[i], ARGV[3])
    renewed[#renewed + 1] = id
  end
end
return renewed
"""

# KEYS: the detached set, then the hashes of the ids in ARGV[2:].  ARGV[1]: now.  Removes
# those still due (another node may have resumed one since it was listed); returns them.
_EXPIRE = """
local now, gone = tonumber(ARGV[1]), {}
for i = 2, #KEYS do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    gone[#gone + 1] = ARGV[i]
  end
end
return gone
"""

# KEYS: the secret, its birth time, the one before.  ARGV: this store's secret (hex; "" on
# the first call), its birth time, the one before it knows (hex or ""), then a new secret
# and its birth time (for the first call, if there is none yet).  The first call takes the
# stored secret if there is one (SET NX's answer); later ones assert their own: absent, it
# is set again (with the one before); another one there, the one born first (then the
# lower) stays and the other becomes the one before.  Returns the secret, its birth time,
# the one before ("" for none).
_SECRET = """
local cur, born, prev = redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]),
  redis.call('GET', KEYS[3])
local mine, mine_born, mine_prev, first = ARGV[1], ARGV[2], ARGV[3], ARGV[1] == ''
if first then mine, mine_born = ARGV[4], ARGV[5] end
if not cur then
  cur, born = mine, mine_born
  redis.call('SET', KEYS[1], cur)
  redis.call('SET', KEYS[2], born)
elseif cur ~= mine and not first then
  local theirs, ours = tonumber(born or '0') or 0, tonumber(mine_born) or 0
  local loser = mine
  if ours < theirs or (ours == theirs and mine < cur) then
    loser, cur, born = cur, mine, mine_born
    redis.call('SET', KEYS[1], cur)
    redis.call('SET', KEYS[2], born)
  end
  if loser ~= prev then
    prev = loser
    redis.call('SET', KEYS[3], prev)
  end
end
if not prev and mine_prev ~= '' and mine_prev ~= cur then
  prev = mine_prev
  redis.call('SET', KEYS[3], prev)
end
return {cur, born or '0', prev or ''}
"""

class _Corrupt(StoreUnavailable):
    """(What the store raises for a record it cannot read: a StoreUnavailable.)"""


#: Ids handed to one run of the expire script.
_BATCH = 500


class RedisStore:
    """Records in the Redis at ``url`` (``redis://host:port/db``, ``rediss://`` for TLS).

    ``prefix`` starts every key; ``timeout`` bounds connecting and each reply (seconds);
    ``grace`` is how long after a detached session's deadline Redis drops it on its own.
    No connection is made before the first call.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "sessionlayer:",
        timeout: float = 2.0,
        grace: float = 60.0,
    ) -> None:
        _check_url(url)
        records.check_timeout(timeout)
        self._client: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not (
            0 <= grace < math.inf
        ):
            raise ValueError(f"grace must be a finite number of seconds >= 0, not {grace!r}")
        self.name = _name(url, self._client.connection_pool.connection_kwargs)
        self.prefix = prefix
        self.grace = grace
        self._detached = f"{prefix}detached"
        self._write = self._client.register_script(_WRITE)
        self._advance = self._client.register_script(_ADVANCE)
        self._put_unless_taken = self._client.register_script(_PUT_UNLESS_TAKEN)
        self._expire = self._client.register_script(_EXPIRE)
        self._delete = self._client.register_script(_DELETE)
        self._renew = self._client.register_script(_RENEW)
        self._assert_secret = self._client.register_script(_SECRET)
        #: The secret to sign with, then the one before (if any); None before the first call.
        self._secrets: tuple[bytes, ...] | None = None
        self._born = ""  # (when the secret was made, as the store says)
        self._closed = False
        self._skipped = records.Skipped(self.name)

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    async def secret(self) -> bytes:
        if self._secrets is None:
            await self.refresh_secret()
            assert self._secrets is not None
        return self._secrets[0]

    async def refresh_secret(self) -> tuple[bytes, ...]:
        key = f"{self.prefix}secret"
        known = self._secrets or ()
        args = [known[0].hex() if known else "", self._born,
                known[1].hex() if len(known) > 1 else "",
                secrets.token_bytes(32).hex(), repr(time.time())]  # fmt: skip
        with self._guard():
            value, born, before = await self._assert_secret(
                keys=[key, f"{key}:born", f"{key}:previous"], args=args
            )
        secret = _secret_of(value)
        if secret is None:
            raise StoreUnavailable(self.name, f"{key} is not 32 octets in hex")
        previous = _secret_of(before)  # (one that is not a secret is no secret of ours)
        self._secrets = (secret,) if previous in (None, secret) else (secret, previous)
        self._born = str(born)
        return self._secrets

    async def put(self, record: SessionRecord) -> None:
        key = self._key(record.id)
        fields: dict[FieldT, EncodableT] = {k: v for k, v in _fields(record)}
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=fields)
                if record.expires_at is None:
                    pipe.zrem(self._detached, record.id)
                else:
                    pipe.zadd(self._detached, {record.id: record.expires_at})
                    pipe.pexpireat(key, self._ttl_end(record.expires_at))
                await pipe.execute()

    async def put_unless_taken(self, record: SessionRecord) -> SessionRecord | None:
        deadline, ttl_end = self._deadline(record.expires_at)
        args = [record.id, str(record.generation), json.dumps(record.node), deadline, ttl_end]
        for field, value in _fields(record):
            args += [field, value]
        with self._guard(record.id):
            stored = await self._put_unless_taken(
                keys=[self._key(record.id), self._detached], args=args
            )
        return None if stored is None else self._decode(record.id, _pairs(stored))

    async def get(self, session_id: str) -> SessionRecord | None:
        with self._guard(session_id):
            fields = await self._client.hgetall(self._key(session_id))
        return self._decode(session_id, fields) if fields else None

    async def advance(
        self, session_id: str, generation: int, *, node: str | None, expires_at: float | None
    ) -> SessionRecord | None:
        deadline, ttl_end = self._deadline(expires_at)
        args = [session_id, str(generation), json.dumps(node), deadline, ttl_end,
                json.dumps(expires_at)]  # fmt: skip
        with self._guard(session_id):
            written = await self._advance(keys=[self._key(session_id), self._detached],
                                          args=args)  # fmt: skip
        return None if written is None else self._decode(session_id, _pairs(written))

    async def update(
        self,
        session_id: str,
        *,
        expires_at: float | Keep | None = KEEP,
        checkpoint: Checkpoint | Keep | None = KEEP,
        node: str | Keep | None = KEEP,
        if_generation: int | None = None,
        if_node: str | None = None,
        detached: bool | Keep = KEEP,
        heard_at: int | Keep | None = KEEP,
    ) -> bool:
        changes: dict[str, Any] = {}
        if expires_at is not KEEP:
            changes["expires_at"] = expires_at
        if checkpoint is not KEEP:
            changes["checkpoint"] = records.checkpoint_to_json(checkpoint)
        if node is not KEEP:
            changes["node"] = node
        if detached is not KEEP:
            changes["detached"] = detached
        if heard_at is not KEEP:  # (both members: an older version reads previous_ok)
            changes.update({"previous_ok": False, "heard_at": None})
            changes.update(records.heard_to_json(heard_at))
        generation = "" if if_generation is None else str(if_generation)
        written = await self._run_write(session_id, generation, if_node, expires_at, changes)
        return written is not None

    async def delete(
        self, session_id: str, *, if_generation: int | None = None, if_node: str | None = None
    ) -> bool:
        if if_generation is None and if_node is None:
            with self._guard():
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.delete(self._key(session_id))
                    pipe.zrem(self._detached, session_id)
                    deleted, _ = await pipe.execute()
            return bool(deleted)
        args = [session_id, "" if if_generation is None else str(if_generation),
                "" if if_node is None else json.dumps(if_node)]  # fmt: skip
        with self._guard(session_id):
            deleted = await self._delete(keys=[self._key(session_id), self._detached], args=args)
        return bool(deleted)

    async def renew(
        self, node: str, session_ids: Sequence[str], expires_at: float
    ) -> builtins.list[str]:
        ids = list(session_ids)
        renewed: builtins.list[str] = []
        with self._guard():
            if not ids:
                await self._client.ping()  # (closed or down: raises, as every call does)
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                keys = [self._detached, *(self._key(i) for i in batch)]
                args = [json.dumps(node), repr(expires_at), str(self._ttl_end(expires_at))]
                renewed += await self._renew(keys=keys, args=[*args, *batch])
        return renewed

    async def list(self) -> builtins.list[SessionRecord]:
        pattern = _glob_escape(f"{self.prefix}session:") + "*"
        start = len(self._key(""))
        with self._guard():
            keys = [key async for key in self._client.scan_iter(match=pattern, count=500)]
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                found = await pipe.execute(raise_on_error=False)
        # A hash may have gone (deleted, or its TTL ran out) between the scan and the read.
        out = []
        for key, fields in zip(keys, found, strict=True):
            if isinstance(fields, BaseException):
                if not _wrong_type(fields):
                    with self._guard():
                        raise fields
                self._skipped.skip(key[start:], "its key holds no hash")  # (not a record)
            elif fields:
                try:
                    out.append(self._decode(key[start:], fields))
                except _Corrupt as exc:  # (one record does not hide the others)
                    self._skipped.skip(key[start:], exc.why)
        return sorted(out, key=lambda r: (r.created, r.id))

    async def expire(self, now: float) -> builtins.list[str]:
        gone: builtins.list[str] = []
        with self._guard():
            while True:
                due = await self._client.zrangebyscore(
                    self._detached, "-inf", repr(now), start=0, num=_BATCH
                )
                if not due:
                    break
                keys = [self._detached, *(self._key(str(i)) for i in due)]
                removed = await self._expire(keys=keys, args=[repr(now), *due])
                if not removed:
                    break  # every one was resumed or removed meanwhile
                gone.extend(removed)
        return gone

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    # -- helpers

    def _ttl_end(self, expires_at: float) -> int:
        """When Redis drops a detached session's hash: ``grace`` after its deadline (ms), at
        most TTL_END_MAX (a later one is out of the range Redis takes: every write of the
        record failed)."""
        return int(min((expires_at + self.grace) * 1000, TTL_END_MAX))

    def _deadline(self, expires_at: float | None) -> tuple[str, str]:
        """The deadline and the TTL's end as the scripts take them ("none" and "" for
        none)."""
        if expires_at is None:
            return "none", ""
        return repr(expires_at), str(self._ttl_end(expires_at))

    async def _run_write(
        self,
        session_id: str,
        generation: str,
        node: str | None,
        expires_at: float | Keep | None,
        changes: Mapping[str, Any],
    ) -> dict[str, str] | None:
        deadline, ttl_end = ("keep", "") if expires_at is KEEP else self._deadline(expires_at)
        args = [session_id, generation, "" if node is None else json.dumps(node), deadline,
                ttl_end]  # fmt: skip
        for field, value in changes.items():
            args += [field, json.dumps(value)]
        with self._guard(session_id):
            written = await self._write(keys=[self._key(session_id), self._detached], args=args)
        return None if written is None else _pairs(written)

    def _decode(self, session_id: str, fields: Mapping[Any, Any]) -> SessionRecord:
        try:
            return records.from_fields(fields)
        except ValueError as exc:  # (whatever the hash holds)
            raise _Corrupt(self.name, f"record {session_id} is corrupt: {exc}",
                           corrupt=session_id) from None

    @contextlib.contextmanager
    def _guard(self, session_id: str | None = None) -> Iterator[None]:
        """Redis's and the socket's errors (refused, timed out, reset, an error reply)
        as StoreUnavailable; a WRONGTYPE reply about ``session_id``'s key (it holds
        something other than a hash) as that record being corrupt."""
        if self._closed:
            raise StoreUnavailable(self.name, "the store was closed")
        try:
            yield
        except ResponseError as exc:
            if session_id is not None and _wrong_type(exc):
                raise _Corrupt(self.name, f"record {session_id} is corrupt: its key holds"
                               " no hash", corrupt=session_id) from None  # fmt: skip
            raise StoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc


def _wrong_type(exc: BaseException) -> bool:
    """A Redis error reply saying a key holds a value of another type (a command's or a
    script's: ``WRONGTYPE Operation against a key holding the wrong kind of value``)."""
    return "WRONGTYPE" in str(exc)


def _secret_of(value: Any) -> bytes | None:
    """The 32 octets ``value`` spells in hex, or None."""
    try:
        secret = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        return None
    return secret if len(secret) == 32 else None


def _fields(record: SessionRecord) -> builtins.list[tuple[str, str]]:
    """The record's hash: each field JSON-encoded (:mod:`.records`)."""
    return [(k, json.dumps(v)) for k, v in records.to_json(record).items()]


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    """HGETALL as a script returns it (field, value, field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


#: What a Redis URL is, as the store takes it (a ValueError's hint).
URL_FORM = ("redis://[USER:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS), DB a database"
            " number, 0 or more (0 without it)")  # fmt: skip


def _check_url(url: str) -> None:
    """ValueError if ``url`` (``redis://``, ``rediss://``) is not :data:`URL_FORM`:
    redis-py took a database that is not a number (``/abc``) or has more after it
    (``/5/extra``) for database 0, and read ``/1/2`` as 12 (it removes the slashes)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return  # (unix://PATH?db=N: redis-py's own)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"  # (no password)
    try:
        parts.port  # noqa: B018  (a ValueError if it is not a port number)
    except ValueError:
        raise ValueError(f"the Redis URL {shown!r} has no port number after the host:"
                         f" {URL_FORM}") from None  # fmt: skip
    dbs = urllib.parse.parse_qs(parts.query).get("db", [])
    if re.fullmatch(r"(/[0-9]*)?", parts.path) is None or not all(
            re.fullmatch(r"[0-9]+", db) for db in dbs):  # fmt: skip
        raise ValueError(f"the Redis URL {shown!r} names no database: {URL_FORM}")


def _name(url: str, kwargs: Mapping[str, Any]) -> str:
    """``redis://host:port/db`` (never the password), from what redis-py parsed."""
    scheme, db = url.partition("://")[0], kwargs.get("db", 0)
    if "path" in kwargs:  # unix:///run/redis.sock
        return f"{scheme}://{kwargs['path']}?db={db}"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
