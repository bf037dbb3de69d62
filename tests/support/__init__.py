"""Test support: real servers and a real browser that tests start on 127.0.0.1.

oidc.py: an OpenID Connect provider (npm oidc-provider); browser.py: headless Chromium through
Playwright. Their pytest fixtures are imported into a conftest.py (see tests/harness/conftest.py).
"""
