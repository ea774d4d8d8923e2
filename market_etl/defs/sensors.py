"""New data arrives by itself: a sensor that notices newly published or republished monthly archives.

Each tick lists every configured symbol's archives once (one bucket-listing
request per symbol, never a request per month, so months that are not out yet
cost nothing), compares each archive's version (ETag) with the cursor
`{symbol: {month: version}}` and requests raw/trades_zip for exactly the new or
changed partitions. Everything downstream follows by declarative automation
(`automation.py`).

Default status: STOPPED unless MARKET_ETL_AUTO_INGEST=1. The listing itself is
cheap, but the first tick on an empty cursor requests every published month in
range: against the real archive that is tens of multi-GB downloads, which a
`make dev` on a laptop must not start unasked. Deployments set the flag (or
switch the sensor on in the UI) once they mean it.
"""

import json

import dagster as dg
import requests

from market_etl.core.keys import TradePartition
from market_etl.core.listing import ListingError, PublishedMonth, list_published_months
from market_etl.defs.keys import RAW_TRADES_ZIP
from market_etl.defs.automation import automation_sensor
from market_etl.settings import Settings

NEW_MONTHS_SENSOR_NAME = "binance_new_months"
Cursor = dict[str, dict[str, str]]  # symbol -> month (YYYY-MM) -> archive version


def months_in_range(partitions_def: dg.MultiPartitionsDefinition, instance: dg.DagsterInstance) -> set[str]:
    """The months (YYYY-MM) the partitions definition has now: first month .. last complete month."""
    month_keys = partitions_def.get_partitions_def_for_dimension("month").get_partition_keys(
        dynamic_partitions_store=instance)
    return {key[:7] for key in month_keys}


def changed_months(listed: list[PublishedMonth], seen: dict[str, str], months: set[str],
                   allow_missing_checksum: bool) -> list[PublishedMonth]:
    """Listed archives in range whose version the cursor has not seen (new or republished)."""
    return [
        archive for archive in listed
        if archive.month in months
        and (archive.has_checksum or allow_missing_checksum)
        and seen.get(archive.month) != archive.version
    ]


def run_request(archive: PublishedMonth, previous_version: str | None) -> dg.RunRequest:
    partition = TradePartition(archive.symbol, archive.month)
    return dg.RunRequest(
        # Version transition in the key: a re-evaluated tick never launches twice, a later republish always does.
        run_key=f"{partition.dagster_key()}:{previous_version or 'new'}->{archive.version}",
        partition_key=partition.dagster_key(),
        asset_selection=[RAW_TRADES_ZIP],
        tags={
            "market_etl/trigger": "republished" if previous_version else "published",
            "market_etl/source_etag": archive.etag,
            "market_etl/source_last_modified": archive.last_modified,
        },
    )


def _load_cursor(text: str | None) -> Cursor:
    return json.loads(text) if text else {}


def build_new_months_sensor(settings: Settings,
                            partitions_def: dg.MultiPartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name=NEW_MONTHS_SENSOR_NAME,
        target=[RAW_TRADES_ZIP],
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING if settings.auto_ingest else dg.DefaultSensorStatus.STOPPED,
        description=(
            "Lists each configured symbol's monthly trades archives in Binance's bucket once per tick and "
            "requests raw/trades_zip for every month that is newly published or republished (new ETag). "
            "Downstream assets follow by declarative automation."
        ),
    )
    def binance_new_months(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        previous = _load_cursor(context.cursor)
        months = months_in_range(partitions_def, context.instance)
        cursor: Cursor = {}
        requests_: list[dg.RunRequest] = []
        failures: list[str] = []
        with requests.Session() as session:
            for symbol in settings.symbols:
                seen = dict(previous.get(symbol, {}))
                cursor[symbol] = seen
                try:
                    listed = list_published_months(symbol, settings.listing_url, session=session,
                                                   timeout=(10.0, settings.http_timeout_seconds))
                except ListingError as err:
                    context.log.warning(f"{symbol}: {err}; will list again next tick")
                    failures.append(str(err))
                    continue
                for archive in changed_months(listed, seen, months, settings.allow_missing_checksum):
                    requests_.append(run_request(archive, seen.get(archive.month)))
                    seen[archive.month] = archive.version
                waiting = [a.month for a in listed if a.month in months and not a.has_checksum]
                if waiting and not settings.allow_missing_checksum:
                    context.log.info(f"{symbol}: {waiting} listed without a .CHECKSUM yet; not requested")
        if failures and len(failures) == len(settings.symbols):
            raise ListingError("no symbol could be listed: " + "; ".join(failures))
        new_cursor = json.dumps(cursor, sort_keys=True)
        if not requests_:
            return dg.SensorResult(skip_reason="no new or republished months", cursor=new_cursor)
        return dg.SensorResult(run_requests=requests_, cursor=new_cursor)

    return binance_new_months


def build_sensors(settings: Settings, partitions_def: dg.MultiPartitionsDefinition) -> list[dg.SensorDefinition]:
    """The location's sensors: new Binance months in, declarative automation downstream."""
    return [build_new_months_sensor(settings, partitions_def), automation_sensor()]
