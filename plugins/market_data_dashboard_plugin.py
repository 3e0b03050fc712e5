"""Mount the market-data dashboard in Airflow's API server at /market-data and link it from the UI's nav.

The app is ``ibkr_market_data.dashboard.app``; every route needs permission to read the market-data
DAGs' runs. See docs/operations.md#the-dashboard.
"""

from airflow.plugins_manager import AirflowPlugin

from ibkr_market_data.dashboard.app import URL_PREFIX, create_app


class MarketDataDashboardPlugin(AirflowPlugin):
    """The dashboard app and its link in the UI's Browse menu."""

    name = "market_data_dashboard"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Market data"}]
    external_views = [
        {
            "name": "Market data",
            "href": f"{URL_PREFIX}/",
            "url_route": "market-data",
            "destination": "nav",
            "category": "browse",
        }
    ]
