"""The dashboard's fields and status line in a browser (a `serve` process on tiny:llama):
what is typed is refused by name when it is no allowed number, and an error looks like one."""
from __future__ import annotations

import pytest

from pages import fill, watched_page

VIEWPORT = {"width": 1200, "height": 900}
ERROR_RED = "rgb(176, 0, 32)"  # the stylesheet's .tw-status.error color, #b00020


def status_color(page, selector: str) -> str:
    """The computed text color of the status line matching `selector` (inside its shadow root)."""
    status = page.locator(selector)
    status.wait_for(timeout=60_000)
    return status.evaluate("element => getComputedStyle(element).color")


@pytest.mark.slow
def test_typed_fields_are_refused_by_what_was_typed(server, browser):
    """Issue 15, item 4: a seed too large for the generator, and a word in a number field, are
    each refused in one line that names the field and what was typed (nothing reverted to
    the old value, no 'Unexpected error'); the values typed next are the ones the run used
    (the run's table says which temperature it ran at)."""
    with watched_page(browser, server, viewport=VIEWPORT) as page:
        page.get_by_text("generate", exact=True).click()
        page.get_by_role("button", name="Generate").wait_for(timeout=10_000)
        fill(page, "New tokens", 2)
        for field, typed, message in (
                ("Seed", "99999999999999999999", "Error: Seed must be at least 0 and at most 1e+09, a whole number; "
                                                 "got 99999999999999999999"),
                ("Temperature", "warm", "Error: Temperature must be greater than 0; got 'warm', which is not a number"),
                ("New tokens", "", "Error: New tokens must be at least 1 and at most 1024, a whole number; "
                                   "got nothing")):
            fill(page, field, typed)
            page.get_by_role("button", name="Generate").click()
            page.locator(".tw-status.error", has_text=message).wait_for(timeout=10_000)
            assert page.locator(".tw-status").inner_text() == message
            fill(page, field, {"Seed": 7, "Temperature": 0.5, "New tokens": 2}[field])
        page.get_by_role("button", name="Generate").click()
        page.locator(".tw-status", has_text="2 tokens generated").wait_for(timeout=60_000)
        assert "(top-p 0.9, temperature 0.5)" in page.locator(".tw-status").inner_text()


@pytest.mark.slow
def test_an_error_is_red_and_a_result_is_not(server, browser):
    """Issue 15, item 5: the status pane's shadow root gets the dashboard's stylesheet: an
    error is drawn in the error red, a finished analysis is not."""
    with watched_page(browser, server, viewport=VIEWPORT) as page:
        page.get_by_text("generate", exact=True).click()
        fill(page, "New tokens", 0)
        page.get_by_role("button", name="Generate").click()
        assert status_color(page, ".tw-status.error") == ERROR_RED
        fill(page, "New tokens", 2)
        page.get_by_role("button", name="Generate").click()
        page.locator(".tw-status", has_text="2 tokens generated").wait_for(timeout=60_000)
        assert status_color(page, ".tw-status") not in (ERROR_RED, "rgb(33, 37, 41)")  # (the page's own text color)
