"""Building blocks of the dashboards: PromQL pieces, template variables, panels, the layout.

Every query reads the template variables through the selectors below (`SCOPE`, `QUEUE`,
`TASK`), so one change here retargets every panel. The variables' "All" is `.*`, which also
matches a series without the label: a Prometheus without the Operator may add no `namespace`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE_WINDOW = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)

SCOPE = ('namespace=~"$namespace"', 'job=~"$job"')
QUEUE = (*SCOPE, 'queue_name=~"$queue_name"')
TASK = (*QUEUE, 'name=~"$task"')

# - PromQL -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One target of a panel: the expression and its legend."""

    expr: str
    legend: str = ""


def selector(metric: str, matchers: Sequence[str], *extra: str) -> str:
    """`metric{matchers..., extra...}`."""
    return f"{metric}{{{', '.join((*matchers, *extra))}}}"


def summed(by: str, inner: str) -> str:
    """`sum by (by) (inner)`, or a plain `sum(inner)` when `by` is empty."""
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def rate(
    counter: str,
    matchers: Sequence[str],
    by: str,
    *extra: str,
    fn: str = "rate",
    window: str = RATE_WINDOW,
) -> str:
    """`fn` (rate, increase) of a counter over `window`, summed by `by`."""
    return summed(by, f"{fn}({selector(counter, matchers, *extra)}[{window}])")


def share(part: str, *whole: str) -> str:
    """`part / (whole[0] + whole[1] + ...)`."""
    return f"{part} / ({' + '.join(whole)})"


def quantiles(histogram: str, matchers: Sequence[str], by: str) -> list[Query]:
    """p50, p95 and p99 of a histogram by `by`, one query each."""
    buckets = rate(f"{histogram}_bucket", matchers, f"{by}, le")
    return [
        Query(f"histogram_quantile({q}, {buckets})", f"p{round(q * 100)} {{{{{by}}}}}")
        for q in QUANTILES
    ]


def by_label(by: str, query: str, suffix: str = "") -> Query:
    """A query whose legend is its `by` label, with an optional suffix."""
    return Query(query, f"{{{{{by}}}}}{suffix}")


# - Template variables -------------------------------------------------------------------------


def datasource_variable() -> dashboard_builders.DatasourceVariable:
    """The Prometheus to read from."""
    return (
        dashboard_builders.DatasourceVariable("datasource").label("Data source").type("prometheus")
    )


def label_variable(
    name: str, label: str, query: str, all_value: str = ".*"
) -> dashboard_builders.QueryVariable:
    """A multi-value variable from `label_values(...)`, "All" by default."""
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(all_value)
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )


# - Panels ------------------------------------------------------------------------------------

PanelBuilder = timeseries.Panel | stat.Panel | table.Panel


def _targets(queries: Sequence[Query], instant: bool = False) -> list[prometheus.Dataquery]:
    targets = []
    for index, query in enumerate(queries):
        target = prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + index))
        if query.legend:
            target = target.legend_format(query.legend)
        if instant:
            target = target.instant().format(PromQueryFormat.TABLE)
        targets.append(target)
    return targets


_Panel = TypeVar("_Panel", timeseries.Panel, stat.Panel, table.Panel)


def _framed(
    panel: _Panel,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    size: tuple[int, int],
    instant: bool = False,
) -> _Panel:
    """What every panel has: title, description, data source, unit, width and height, queries."""
    span, height = size
    return (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(span)
        .height(height)
        .targets(list(_targets(queries, instant)))
    )


def graph(
    title: str, description: str, unit: str, *queries: Query, span: int = 12, height: int = 8
) -> timeseries.Panel:
    """A time series panel with its legend below, every series in the tooltip, largest first."""
    panel = (
        _framed(timeseries.Panel(), title, description, unit, queries, (span, height))
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    return panel.min(0).max(1) if unit == "percentunit" else panel


def steps(base: str, *limits: tuple[float, str]) -> dashboard_builders.ThresholdsConfig:
    """Absolute thresholds: `base` below the first limit, then each limit's colour."""
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(None, base), *(models.Threshold(v, c) for v, c in limits)])
    )


def single(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    thresholds: dashboard_builders.ThresholdsConfig | None = None,
    mappings: Sequence[models.ValueMapping] = (),
    span: int = 6,
    height: int = 5,
) -> stat.Panel:
    """A stat panel of each series' latest value; colours from `thresholds`."""
    panel = (
        _framed(stat.Panel(), title, description, unit, queries, (span, height))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds or steps("green"))
    )
    return panel.mappings(list(mappings)) if mappings else panel


def listing(
    title: str, description: str, unit: str, query: Query, span: int = 12, height: int = 8
) -> table.Panel:
    """A table of one instant query's series, one row per label set, without the time column."""
    return _framed(
        table.Panel(), title, description, unit, [query], (span, height), instant=True
    ).with_transformation(
        models.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})
    )


def up_down() -> list[models.ValueMapping]:
    """Show 1 as "up" (green) and 0 as "down" (red)."""
    return [
        models.ValueMap(
            {
                "0": models.ValueMappingResult(text="down", color="red", index=0),
                "1": models.ValueMappingResult(text="up", color="green", index=1),
            }
        )
    ]


# - Layout ------------------------------------------------------------------------------------


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[Builder[models.VariableModel]],
    rows: Sequence[tuple[str, Sequence[PanelBuilder]]],
) -> dashboard_builders.Dashboard:
    """A dashboard of titled rows, panels numbered in order, linked to its siblings by tag."""
    board = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["flask-celery", "celery"])
        .refresh("30s")
        .time("now-6h", "now")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard_builders.DashboardLink("Flask Celery")
            .type(models.DashboardLinkType.DASHBOARDS)
            .tags(["flask-celery"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .variables(list(variables))
    )
    panel_id = 0
    for row_title, panels in rows:
        panel_id += 1
        board = board.with_row(dashboard_builders.Row(row_title).id(panel_id))
        for panel in panels:
            panel_id += 1
            board = board.with_panel(panel.id(panel_id))
    return board
