"""Swagger UI at ``/openapi/`` renders under its Content-Security-Policy:
the document loads, operations expand, and the browser reports no CSP
violation (the harness also fails the test on any console error)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_swagger_ui_works_under_its_csp(anon_page, site):
    page = anon_page
    page.add_init_script(RECORD_VIOLATIONS)
    response = page.goto("/openapi/")
    assert (
        response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    )
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("crewboard")
    operation = page.locator("#operations-admin-getAdminUsage")
    operation.locator(".opblock-summary").click()
    expect(operation.locator(".opblock-body")).to_be_visible()
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert page.evaluate("window.cspViolations") == []
