"""Hypothesis strategies: valid SPDUs of every kind, and valid TSDUs.

Written from the standard's parameter tables (X.225 8.3, as summarised in
the project's wire reference), not from the codec's own ``SPEC`` tuples, so
that a wrong table in the codec shows up as a failing round trip rather than
being copied into the test.  Each kind has one function ``version -> strategy``
that fills *every* field the SPDU has, each either absent or with a value
drawn from its whole valid range.

Limits used here (octets):

* references 64 (additional reference 4), session selectors 16, activity
  identifiers 1..6, serial numbers 0..999999 in ASCII digits;
* user data: 512 in version 1 (none at all in GT, AI, AIA, AD, ADA);
  in version 2, 10240 in CN and AC, 512 in CD/CDA, and otherwise whatever
  fits the 65535-octet parameter field (:data:`BIG` here);
* EX user information 14; DT/TD user information is bounded only by the TSDU.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from sessionlayer.spdu import (
    SPDU,
    Abort,
    AbortAccept,
    Accept,
    ActivityDiscard,
    ActivityDiscardAck,
    ActivityEnd,
    ActivityEndAck,
    ActivityInterrupt,
    ActivityInterruptAck,
    ActivityResume,
    ActivityStart,
    CapabilityData,
    CapabilityDataAck,
    Connect,
    ConnectAcceptItem,
    ConnectDataOverflow,
    ConnectionId,
    DataTransfer,
    Disconnect,
    ExceptionData,
    ExceptionReport,
    Expedited,
    Finish,
    GiveTokens,
    GiveTokensAck,
    GiveTokensConfirm,
    LinkingInformation,
    MajorSyncAck,
    MajorSyncPoint,
    MinorSyncAck,
    MinorSyncPoint,
    NotFinished,
    OverflowAccept,
    PleaseTokens,
    Prepare,
    Refuse,
    Resynchronize,
    ResynchronizeAck,
    TypedData,
)

#: Version-2 user data of SPDUs limited only by the parameter field's LI (65535),
#: less room for the other parameters.
BIG = 60_000
#: DT/TD user information: outside the LI, bounded by the TSDU only.
HUGE = 70_000

Strategy = st.SearchStrategy[Any]


# ------------------------------------------------------------------ building blocks


def _fill(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def blob(max_size: int, min_size: int = 0) -> Strategy:
    """Octets of min..max length: small shrinkable ones, and any size up to the limit."""
    if max_size <= 0:
        return st.just(b"")
    edges = [n for n in (0, 1, 254, 255, 256, 511, 512, 513, max_size) if min_size <= n <= max_size]
    sizes = st.one_of(st.sampled_from(edges), st.integers(min_size, max_size))
    small = st.binary(min_size=min_size, max_size=max(min_size, min(max_size, 40)))
    return st.one_of(small, st.builds(_fill, sizes, st.integers(0, 2**32)))


def opt(strategy: Strategy) -> Strategy:
    return st.one_of(st.none(), strategy)


def v2_only(version: int, strategy: Strategy) -> Strategy:
    """Parameters X.225 adds in version 2 (enclosure, second serial numbers, ...)."""
    return opt(strategy) if version == 2 else st.none()


def user_data(version: int, v1: int, v2: int, *, small: bool) -> Strategy:
    limit = v1 if version == 1 else v2
    if small:
        limit = min(limit, 300)
    if limit == 0:
        return st.none()
    return opt(blob(limit))


u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
serial = st.integers(0, 999_999)
reference = st.binary(max_size=64)
additional_reference = st.binary(max_size=4)
ssel = st.binary(max_size=16)
activity_id = st.binary(min_size=1, max_size=6)
tsdu_sizes = st.tuples(u16, u16)
enclosure = st.integers(0, 3)
requirements = st.integers(0, 0x1FFF)
transport_disconnect = st.integers(0, 0x1F)
exception_reason = st.sampled_from([0, 1, 3, 5, 6, 128])
digits = st.text(alphabet="0123456789", min_size=1, max_size=64).map(str.encode)


def connect_accept_item(version: int, *, in_connect: bool, chosen: Strategy) -> Strategy:
    """PGI 5.  CN may carry the version-2 serial-number items 55..58; AC does not."""
    extra = in_connect and version == 2
    return st.builds(
        ConnectAcceptItem,
        protocol_options=opt(st.integers(0, 1)),
        tsdu_max_size=opt(tsdu_sizes),
        version=chosen,
        initial_serial=opt(serial),
        token_setting=opt(u8),
        second_initial_serial=opt(serial) if extra else st.none(),
        upper_limit_serial=opt(st.integers(1, 6)) if extra else st.none(),
        large_initial_serial=opt(digits) if extra else st.none(),
        large_second_initial_serial=opt(digits) if extra else st.none(),
    )


def calling_connection_id() -> Strategy:
    """PGI 1 in CN: the calling SS-user reference, common and additional reference."""
    return st.builds(
        ConnectionId,
        calling_ref=opt(reference),
        common_ref=opt(reference),
        additional_ref=opt(additional_reference),
    )


def called_connection_id() -> Strategy:
    """PGI 1 in AC and RF: the called SS-user reference, common and additional reference."""
    return st.builds(
        ConnectionId,
        called_ref=opt(reference),
        common_ref=opt(reference),
        additional_ref=opt(additional_reference),
    )


# ------------------------------------------------------------------ one strategy per kind


def connect(version: int, small: bool = False) -> Strategy:
    # A CN's own Version Number decides its limits: v1 only -> 512 octets;
    # v2 offered (or PGI 5 / PI 22 absent) -> up to 10240 (PGI 194 above 512).
    if version == 1:
        item: Strategy = connect_accept_item(1, in_connect=True, chosen=st.just(1))
    else:
        chosen = st.sampled_from([None, 2, 3])
        item = opt(connect_accept_item(2, in_connect=True, chosen=chosen))
    return st.builds(
        Connect,
        connection_id=opt(calling_connection_id()),
        item=item,
        requirements=opt(requirements),
        calling_ssel=opt(ssel),
        called_ssel=opt(ssel),
        data_overflow=v2_only(version, st.just(1)),
        user_data=user_data(version, 512, 10240, small=small),
    )


def overflow_accept(version: int, small: bool = False) -> Strategy:
    return st.builds(OverflowAccept, tsdu_max_size=opt(tsdu_sizes), version=st.integers(1, 3))


def connect_data_overflow(version: int, small: bool = False) -> Strategy:
    return st.builds(
        ConnectDataOverflow,
        enclosure=opt(enclosure),
        user_data=blob(300 if small else BIG),
    )


def accept(version: int, small: bool = False) -> Strategy:
    return st.builds(
        Accept,
        connection_id=opt(called_connection_id()),
        item=opt(connect_accept_item(version, in_connect=False, chosen=opt(st.just(version)))),
        tokens=opt(u8),
        requirements=opt(requirements),
        calling_ssel=opt(ssel),
        responding_ssel=opt(ssel),
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, 10240, small=small),
    )


def refuse(version: int, small: bool = False) -> Strategy:
    # Reason Code PI 50: a reason octet; with reason 2 the user data follows
    # inside the same PI (at least one octet: none means "absent").
    limit = 300 if small else (512 if version == 1 else BIG)
    reason_and_data = st.one_of(
        st.tuples(st.none(), st.none()),
        st.tuples(st.sampled_from([0, 1, 2, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86]), st.none()),
        st.tuples(st.just(2), blob(limit, min_size=1)),
    )
    return st.builds(
        lambda rd, **kw: Refuse(reason=rd[0], user_data=rd[1], **kw),
        reason_and_data,
        connection_id=opt(called_connection_id()),
        transport_disconnect=opt(transport_disconnect),
        requirements=opt(requirements),
        version=opt(st.integers(1, 3)),
        enclosure=v2_only(version, enclosure),
    )


def finish(version: int, small: bool = False) -> Strategy:
    return st.builds(
        Finish,
        transport_disconnect=opt(transport_disconnect),
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def _enclosure_and_data(cls: type[SPDU], v1: int, v2: int) -> Callable[..., Strategy]:
    def make(version: int, small: bool = False) -> Strategy:
        return st.builds(
            cls,
            enclosure=v2_only(version, enclosure),
            user_data=user_data(version, v1, v2, small=small),
        )

    make.__name__ = cls.__name__
    return make


disconnect = _enclosure_and_data(Disconnect, 512, BIG)
not_finished = _enclosure_and_data(NotFinished, 512, BIG)
capability_data = _enclosure_and_data(CapabilityData, 512, BIG)
capability_data_ack = _enclosure_and_data(CapabilityDataAck, 512, BIG)
activity_interrupt_ack = _enclosure_and_data(ActivityInterruptAck, 0, BIG)
activity_discard_ack = _enclosure_and_data(ActivityDiscardAck, 0, BIG)


def abort(version: int, small: bool = False) -> Strategy:
    return st.builds(
        Abort,
        transport_disconnect=opt(transport_disconnect),
        reflect=opt(st.binary(max_size=9)),
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def no_parameters(cls: type[SPDU]) -> Callable[..., Strategy]:
    def make(version: int, small: bool = False) -> Strategy:
        return st.builds(cls)

    make.__name__ = cls.__name__
    return make


def data_transfer(version: int, small: bool = False) -> Strategy:
    return st.builds(
        DataTransfer,
        enclosure=v2_only(version, enclosure),
        user_data=blob(300 if small else HUGE),
    )


def typed_data(version: int, small: bool = False) -> Strategy:
    return st.builds(
        TypedData,
        enclosure=v2_only(version, enclosure),
        user_data=blob(300 if small else HUGE),
    )


def expedited(version: int, small: bool = False) -> Strategy:
    return st.builds(Expedited, user_data=st.binary(max_size=14))


def give_tokens(version: int, small: bool = False) -> Strategy:
    return st.builds(
        GiveTokens,
        tokens=opt(u8),
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 0, BIG, small=small),
    )


def please_tokens(version: int, small: bool = False) -> Strategy:
    return st.builds(
        PleaseTokens,
        tokens=opt(u8),
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def minor_sync_point(version: int, small: bool = False) -> Strategy:
    return st.builds(
        MinorSyncPoint,
        sync_type=opt(st.integers(0, 1)),
        serial_number=serial,
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def _serial_enclosure_data(cls: type[SPDU]) -> Callable[..., Strategy]:
    def make(version: int, small: bool = False) -> Strategy:
        return st.builds(
            cls,
            serial_number=serial,
            enclosure=v2_only(version, enclosure),
            user_data=user_data(version, 512, BIG, small=small),
        )

    make.__name__ = cls.__name__
    return make


minor_sync_ack = _serial_enclosure_data(MinorSyncAck)
major_sync_ack = _serial_enclosure_data(MajorSyncAck)
activity_end = _serial_enclosure_data(ActivityEnd)
activity_end_ack = _serial_enclosure_data(ActivityEndAck)


def major_sync_point(version: int, small: bool = False) -> Strategy:
    return st.builds(
        MajorSyncPoint,
        sync_type=u8.map(lambda v: v | 0x01),  # (bit 1 clear: an AE)
        serial_number=serial,
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def resynchronize(version: int, small: bool = False) -> Strategy:
    return st.builds(
        Resynchronize,
        token_setting=opt(u8),
        resync_type=st.integers(0, 2),
        serial_number=serial,
        second_resync_type=v2_only(version, st.integers(0, 2)),
        second_serial_number=v2_only(version, serial),
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def resynchronize_ack(version: int, small: bool = False) -> Strategy:
    return st.builds(
        ResynchronizeAck,
        token_setting=opt(u8),
        serial_number=serial,
        second_serial_number=v2_only(version, serial),
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def prepare(version: int, small: bool = False) -> Strategy:
    return st.builds(Prepare, prepare_type=st.integers(1, 4))


def exception_report(version: int, small: bool = False) -> Strategy:
    return st.builds(ExceptionReport, reflect=st.one_of(st.binary(max_size=9), blob(300)))


def exception_data(version: int, small: bool = False) -> Strategy:
    return st.builds(
        ExceptionData,
        reason=exception_reason,
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def activity_start(version: int, small: bool = False) -> Strategy:
    return st.builds(
        ActivityStart,
        activity_id=activity_id,
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def activity_resume(version: int, small: bool = False) -> Strategy:
    linking = st.builds(
        LinkingInformation,
        called_ref=opt(reference),
        calling_ref=opt(reference),
        common_ref=opt(reference),
        additional_ref=opt(additional_reference),
        old_activity_id=activity_id,
        serial_number=serial,
    )
    return st.builds(
        ActivityResume,
        linking=linking,
        activity_id=activity_id,
        enclosure=v2_only(version, enclosure),
        user_data=user_data(version, 512, BIG, small=small),
    )


def _reason_enclosure_data(cls: type[SPDU]) -> Callable[..., Strategy]:
    def make(version: int, small: bool = False) -> Strategy:
        return st.builds(
            cls,
            reason=opt(exception_reason),
            enclosure=v2_only(version, enclosure),
            user_data=user_data(version, 0, BIG, small=small),
        )

    make.__name__ = cls.__name__
    return make


activity_interrupt = _reason_enclosure_data(ActivityInterrupt)
activity_discard = _reason_enclosure_data(ActivityDiscard)


#: kind -> (version -> strategy).  Every kind in ALL_SPDUS must be here.
BY_KIND: dict[str, Callable[..., Strategy]] = {
    "CN": connect,
    "OA": overflow_accept,
    "CDO": connect_data_overflow,
    "AC": accept,
    "RF": refuse,
    "FN": finish,
    "DN": disconnect,
    "NF": not_finished,
    "AB": abort,
    "AA": no_parameters(AbortAccept),
    "DT": data_transfer,
    "EX": expedited,
    "TD": typed_data,
    "CD": capability_data,
    "CDA": capability_data_ack,
    "GT": give_tokens,
    "PT": please_tokens,
    "GTC": no_parameters(GiveTokensConfirm),
    "GTA": no_parameters(GiveTokensAck),
    "MIP": minor_sync_point,
    "MIA": minor_sync_ack,
    "MAP": major_sync_point,
    "MAA": major_sync_ack,
    "RS": resynchronize,
    "RA": resynchronize_ack,
    "PR": prepare,
    "ER": exception_report,
    "ED": exception_data,
    "AS": activity_start,
    "AR": activity_resume,
    "AI": activity_interrupt,
    "AIA": activity_interrupt_ack,
    "AD": activity_discard,
    "ADA": activity_discard_ack,
    "AE": activity_end,
    "AEA": activity_end_ack,
}

#: Kinds that exist only in version 2 (X.225 v2: overflow of CN user data).
V2_ONLY = frozenset({"OA", "CDO"})

# The concatenation categories, X.225 6.3.7 (written out here, not taken from
# the codec): category 1 stands alone; category 2 follows GT or PT.
CATEGORY_1 = ("CN", "OA", "CDO", "AC", "RF", "FN", "DN", "NF", "AB", "AA", "EX", "TD",
              "GTC", "GTA", "PR")  # fmt: skip
AFTER_GT = ("DT", "MIP", "MAP", "RS", "AS", "AR", "AD", "AI", "CD", "AE")
AFTER_PT = ("MIA", "MAA", "RA", "ADA", "AIA", "CDA", "ER", "ED", "AEA")


@functools.cache
def spdu(kind: str, version: int, small: bool = False) -> Strategy:
    """Valid SPDUs of one kind (``small``: user data of at most 300 octets)."""
    return BY_KIND[kind](version, small)


versions = st.sampled_from([1, 2])


@st.composite
def spdu_and_version(draw: st.DrawFn, kinds: tuple[str, ...] | None = None) -> tuple[SPDU, int]:
    """Any valid SPDU of any kind, with the version it is valid in."""
    kind = draw(st.sampled_from(kinds or tuple(BY_KIND)))
    version = 2 if kind in V2_ONLY else draw(versions)
    return draw(spdu(kind, version)), version


@st.composite
def pair(draw: st.DrawFn, version: int, small: bool = False, *, inner: bool = False) -> list[SPDU]:
    """GT or PT, alone or followed by one category-2 SPDU it may carry.

    ``inner``: a pair that more SPDUs follow (extended concatenation): it must
    have its category-2 SPDU, and that may not carry user information (DT).
    """
    leader = draw(st.sampled_from(["GT", "PT"]))
    followers = [k for k in (AFTER_GT if leader == "GT" else AFTER_PT) if not inner or k != "DT"]
    out = [draw(spdu(leader, version, small))]
    if inner or draw(st.booleans()):
        out.append(draw(spdu(draw(st.sampled_from(followers)), version, small)))
    return out


@st.composite
def tsdu(
    draw: st.DrawFn, version: int, *, extended: bool = False, small: bool = False
) -> list[SPDU]:
    """The SPDUs of one valid TSDU.

    Basic concatenation: one category-1 SPDU alone, or one GT/PT pair.
    Extended concatenation: up to four pairs in a row; only the last pair may
    end without a category-2 SPDU, and DT (user information) only at the very end.
    """
    if not extended and draw(st.booleans()):
        kinds = tuple(k for k in CATEGORY_1 if version == 2 or k not in V2_ONLY)
        return [draw(spdu(draw(st.sampled_from(kinds)), version, small))]
    if not extended:
        return draw(pair(version, small))
    count = draw(st.integers(1, 4))
    out: list[SPDU] = []
    for index in range(count):
        out += draw(pair(version, small=True, inner=index < count - 1))
    return out


def expected(spdus: list[SPDU] | tuple[SPDU, ...]) -> tuple[SPDU, ...]:
    """What decoding gives back: AEA is encoded as MAA and decodes as MAA, by design."""
    out: list[SPDU] = []
    for s in spdus:
        if isinstance(s, ActivityEndAck):
            out.append(
                MajorSyncAck(
                    serial_number=s.serial_number, enclosure=s.enclosure, user_data=s.user_data
                )
            )
        else:
            out.append(s)
    return tuple(out)
