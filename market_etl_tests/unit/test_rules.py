"""The rule table is declared once, free of pyspark, and compiles to every engine's SQL."""
from market_etl.core.rules import RULES, MonthBounds, PARSED_COLUMNS, rule_case_sql, translate
from market_etl_tests.imports import modules_imported_by


def test_importing_the_definitions_does_not_import_pyspark():
    assert modules_imported_by("import market_etl.definitions, market_etl.core.rules, market_etl.core.checks",
                               "pyspark") == []


def test_every_predicate_reads_only_parsed_columns_and_translates_to_duckdb():
    import sqlglot
    from sqlglot import exp

    bounds = MonthBounds(1, 2)
    for rule in RULES:
        columns = {c.name for c in sqlglot.parse_one(rule.sql(bounds), read="spark").find_all(exp.Column)}
        assert columns and columns <= set(PARSED_COLUMNS), rule.name
    case = translate(rule_case_sql(bounds), "duckdb")
    assert all(f"'{rule.name}'" in case for rule in RULES)
