# Production image: the official Airflow image of the pinned version, plus this project.
FROM apache/airflow:3.3.2-python3.11

# requirements.txt pins every package (the lock of requirements/runtime.in); installing it on top
# of the official image keeps Airflow at the same version and adds ib_insync, exchange_calendars.
COPY --chown=airflow:root requirements.txt /opt/ibkr-market-data/requirements.txt
RUN pip install --no-cache-dir -r /opt/ibkr-market-data/requirements.txt

# The provider package only (include/ibkr_market_data): the IBKR hook, its `ibkr` connection type,
# the timetable and the task code. pyproject.toml's package list leaves out the TWS simulator and
# the local-stack tools that live beside it in include/.
COPY --chown=airflow:root pyproject.toml /opt/ibkr-market-data/
COPY --chown=airflow:root include/ibkr_market_data /opt/ibkr-market-data/include/ibkr_market_data
RUN pip install --no-cache-dir --no-deps /opt/ibkr-market-data

# Prints a Docker secret for Airflow's *_CMD settings, URL-encoded into a URL where one is given
# (docker-compose.yaml). The secrets themselves are files mounted at run time, never in the image.
COPY --chown=airflow:root deploy/read_secret.py /opt/ibkr-market-data/read_secret.py

COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root pools.json /opt/airflow/pools.json

# Production auth manager: the fab provider's users, roles and logins (pinned in requirements.txt).
# The local stack's login-free mode is never part of the image.
ENV AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
