def test_retry_after_reads_milliseconds_seconds_and_dates_in_any_header_case() -> None:
    import email.utils
    import time

    from finetune_hub.errors import retry_after

    assert retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after": "soon"}) is None and retry_after(None) is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < (retry_after({"RETRY-AFTER": later}) or 0) <= 60
