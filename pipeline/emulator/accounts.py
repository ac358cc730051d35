"""Multi-account serving: the account of an access key, resolved through STS."""

from __future__ import annotations

import threading
import urllib.request
import xml.etree.ElementTree as ElementTree

__all__ = ["CallerAccounts"]


class CallerAccounts:
    """The account of an access key, from STS GetCallerIdentity, remembered per key.

    The call carries the request's access key and session token but no valid signature: this
    is for STS emulators that do not verify signatures (moto's server), never for real STS.
    """

    def __init__(self, sts_endpoint_url: str, timeout_s: float = 5.0) -> None:
        self.sts_endpoint_url = sts_endpoint_url
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._accounts: dict[str, str] = {}

    def account_of(self, access_key: str, session_token: str | None) -> str | None:
        """The key's account, or None when STS cannot say."""
        with self._lock:
            known = self._accounts.get(access_key)
        if known is not None:
            return known
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/20000101/us-east-1/"
            "sts/aws4_request, SignedHeaders=host, Signature=unverified",
        }
        if session_token:
            headers["X-Amz-Security-Token"] = session_token
        request = urllib.request.Request(
            self.sts_endpoint_url,
            data=b"Action=GetCallerIdentity&Version=2011-06-15",
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                document = ElementTree.fromstring(response.read())
        except (OSError, ElementTree.ParseError):
            return None
        account = next((e.text for e in document.iter() if e.tag.endswith("}Account")), None)
        if account is None:
            return None
        with self._lock:
            self._accounts[access_key] = account
        return account

    def keys(self) -> dict[str, str]:
        """Every access key resolved so far, with its account."""
        with self._lock:
            return dict(self._accounts)
