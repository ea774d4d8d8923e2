"""What Binance has published: the archive's S3 bucket listing (ListObjects v1 XML), parsed.

One listing request per symbol returns every monthly archive with its ETag,
LastModified and size (1000 keys a page; a symbol has ~200), so a sensor can
notice a newly published or a republished month without probing a URL per
month. A month counts as published once its `.zip` and its `.CHECKSUM` are
both listed: Binance uploads the two separately, and a download started
between the two would fail on the missing checksum.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from market_etl.core import defaults
from market_etl.core.binance import listing_prefix
from market_etl.core.keys import validate_symbol

if TYPE_CHECKING:  # requests is imported where a listing is fetched: settings import this module's URL
    import requests

DEFAULT_LISTING_URL = defaults.BINANCE_LISTING_URL
# Some old checksum names carry an unpadded month (`...-2020-8.zip.CHECKSUM`); normalised below.
_ARCHIVE_NAME = re.compile(
    r"(?P<symbol>[A-Z0-9]+)-trades-(?P<year>\d{4})-(?P<month>\d{1,2})\.zip(?P<checksum>\.CHECKSUM)?")
_MAX_PAGES = 100


class ListingError(RuntimeError):
    """The listing could not be fetched or read; the message says which URL and why."""


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    last_modified: str
    etag: str


@dataclass(frozen=True)
class ListingPage:
    objects: tuple[ListedObject, ...]
    next_marker: str | None  # None when this is the last page


@dataclass(frozen=True)
class PublishedMonth:
    """One monthly trades archive as the bucket lists it."""

    symbol: str
    month: str  # YYYY-MM
    key: str
    size: int
    last_modified: str
    etag: str
    has_checksum: bool

    @property
    def version(self) -> str:
        """What changes when Binance republishes the file: its ETag, else LastModified and size."""
        return self.etag or f"{self.last_modified}|{self.size}"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def parse_listing_page(xml_text: str | bytes) -> ListingPage:
    """Parse one ListBucketResult page (namespaced or not) into objects and the marker of the next page."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        raise ListingError(f"bucket listing is not XML: {err}") from err
    if _local(root.tag) != "ListBucketResult":
        raise ListingError(f"expected a ListBucketResult, got <{_local(root.tag)}>")
    objects = []
    for element in root:
        if _local(element.tag) != "Contents":
            continue
        key = _child_text(element, "Key")
        if not key:
            raise ListingError("a <Contents> entry has no <Key>")
        objects.append(ListedObject(
            key=key,
            size=int(_child_text(element, "Size") or 0),
            last_modified=_child_text(element, "LastModified") or "",
            etag=(_child_text(element, "ETag") or "").strip('"'),
        ))
    truncated = (_child_text(root, "IsTruncated") or "false").lower() == "true"
    if not truncated:
        return ListingPage(tuple(objects), None)
    # S3 sends NextMarker only when a delimiter was given; otherwise the last key is the marker.
    marker = _child_text(root, "NextMarker") or (objects[-1].key if objects else None)
    if not marker:
        raise ListingError("listing says IsTruncated but gives no marker to continue from")
    return ListingPage(tuple(objects), marker)


def published_months(symbol: str, objects: list[ListedObject] | tuple[ListedObject, ...]) -> list[PublishedMonth]:
    """The symbol's monthly trades archives among the listed objects, oldest first."""
    archives: dict[str, ListedObject] = {}
    checksums: set[str] = set()
    for obj in objects:
        match = _ARCHIVE_NAME.fullmatch(obj.key.rsplit("/", 1)[-1])
        if not match or match["symbol"] != symbol or not 1 <= int(match["month"]) <= 12:
            continue
        month = f"{match['year']}-{int(match['month']):02d}"
        if match["checksum"]:
            checksums.add(month)
        else:
            archives[month] = obj
    return [
        PublishedMonth(symbol=symbol, month=month, key=obj.key, size=obj.size,
                       last_modified=obj.last_modified, etag=obj.etag, has_checksum=month in checksums)
        for month, obj in sorted(archives.items())
    ]


def _get_page(session: requests.Session, url: str, params: dict, timeout) -> str:
    """GET one listing page; errors name the URL (no retries here: the next sensor tick is the retry)."""
    import requests

    try:
        resp = session.get(url, params=params, timeout=timeout)
    except requests.RequestException as err:
        raise ListingError(f"listing {url}?prefix={params['prefix']}: {type(err).__name__}: {err}") from err
    if resp.status_code != 200:
        raise ListingError(f"listing {url}?prefix={params['prefix']}: HTTP {resp.status_code}")
    return resp.text


def _pages(session: requests.Session, listing_url: str, prefix: str, timeout) -> Iterator[ListingPage]:
    url = listing_url.rstrip("/") + "/"
    marker = ""
    for _ in range(_MAX_PAGES):
        page = parse_listing_page(_get_page(session, url, {"prefix": prefix, "delimiter": "/", "marker": marker},
                                            timeout))
        yield page
        if page.next_marker is None:
            return
        if page.next_marker <= marker:
            raise ListingError(f"listing of {prefix} does not advance (marker {page.next_marker!r})")
        marker = page.next_marker
    raise ListingError(f"listing of {prefix} exceeded {_MAX_PAGES} pages")


def list_published_months(symbol: str, listing_url: str = DEFAULT_LISTING_URL, *,
                          session: requests.Session | None = None,
                          timeout: tuple[float, float] = (defaults.HTTP_CONNECT_TIMEOUT_SECONDS,
                                                          defaults.HTTP_TIMEOUT_SECONDS)) -> list[PublishedMonth]:
    """Every monthly trades archive the bucket lists for `symbol`: one request per 1000 keys."""
    if session is None:
        import requests

        with requests.Session() as own:
            return list_published_months(symbol, listing_url, session=own, timeout=timeout)
    prefix = listing_prefix(validate_symbol(symbol))
    objects = [obj for page in _pages(session, listing_url, prefix, timeout) for obj in page.objects]
    return published_months(symbol, objects)
