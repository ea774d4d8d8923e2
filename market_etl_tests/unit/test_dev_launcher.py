"""`make dev` after `make demo`: the demo's state file and the environment Dagster starts with."""
from market_etl_devtools.dev import dev_environment, read_env_file, write_demo_env


def test_demo_state_round_trips_and_keeps_dagster_on_the_demo_mirror(tmp_path):
    path = write_demo_env({"MARKET_ETL_LAKE": "/x/lake", "MARKET_ETL_SYMBOLS": "BTCUSDT,ETHUSDT",
                           "MARKET_ETL_FIRST_MONTH": "2025-07", "MARKET_ETL_DEMO_MIRROR": "/x/mirror"},
                          tmp_path / "demo.env")
    demo = read_env_file(path)
    env = dev_environment({"PATH": "/bin"}, demo, "http://127.0.0.1:5555")
    assert env["BINANCE_BASE_URL"] == env["BINANCE_LISTING_URL"] == "http://127.0.0.1:5555"
    assert (env["MARKET_ETL_LAKE"], env["MARKET_ETL_SYMBOLS"], env["MARKET_ETL_FIRST_MONTH"]) == (
        "/x/lake", "BTCUSDT,ETHUSDT", "2025-07")
    assert "MARKET_ETL_DEMO_MIRROR" not in env and env["PATH"] == "/bin"


def test_what_the_shell_sets_wins_and_without_demo_nothing_is_added():
    explicit = {"BINANCE_BASE_URL": "https://data.binance.vision", "MARKET_ETL_LAKE": "/mine"}
    env = dev_environment(explicit, {"MARKET_ETL_LAKE": "/demo"}, "http://127.0.0.1:5555")
    assert env["BINANCE_BASE_URL"] == "https://data.binance.vision" and env["MARKET_ETL_LAKE"] == "/mine"
    assert dev_environment(explicit, None, None) == explicit
