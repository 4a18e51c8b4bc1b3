"""The tracing seam itself: no-op while off, traceparent of whichever span is current."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from genaiops import tracing


def test_off_is_one_shared_no_op_and_sends_no_header() -> None:
    assert not tracing.enabled() and tracing.provider() is None
    with tracing.span("a", {"k": 1}) as s:
        assert not s.is_recording()
        headers: dict[str, str] = {}
        tracing.inject(headers)
    assert headers == {} and tracing.current_ids() is None


def test_a_span_of_another_tracer_still_propagates() -> None:
    """promptflow's own tracing (or any SDK tracer) made the current span: a flow's gateway call
    carries it, though genaiops tracing is off."""
    other = TracerProvider().get_tracer("promptflow")
    with other.start_as_current_span("pf.node") as s:
        headers: dict[str, str] = {}
        tracing.inject(headers)
        ctx = s.get_span_context()
    assert headers["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"


def test_recording_nests_spans_and_resets() -> None:
    tp = TracerProvider()
    with tracing.recording(tp), tracing.span("outer"), tracing.span("inner") as inner:
        ids = tracing.current_ids()
        assert ids is not None
        assert ids[1] == f"{inner.get_span_context().span_id:016x}"
    assert not tracing.enabled()
