# The pipeline image for the real deployment (docker-compose.yml): the locked dependency set
# and the project, run by Airflow's own components. Untested on the build machines (no Docker
# engine there); the embedded path (`make demo`) is what CI exercises.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    JOINEDUP_HOME=/data AIRFLOW_HOME=/opt/airflow GX_ANALYTICS_ENABLED=false
WORKDIR /opt/joinedup
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip install --system --no-cache --require-hashes -r requirements.lock
COPY joinedup ./joinedup
COPY synth ./synth
COPY linkage ./linkage
COPY models ./models
COPY expectations ./expectations
COPY warehouse ./warehouse
COPY dashboard ./dashboard
COPY dags ./dags
COPY pseudonymiser ./pseudonymiser
COPY privacy_eval ./privacy_eval
COPY forecast ./forecast
RUN uv pip install --system --no-deps --no-build-isolation . \
 && useradd --create-home --uid 50000 joinedup && mkdir -p /data /opt/airflow \
 && chown -R joinedup /data /opt/airflow
USER joinedup
