# The ingestflow image for docker-compose.kafka.yml: one image, the gateway or a worker by its command.
FROM python:3.11.13-slim-bookworm
WORKDIR /opt/ingestflow
COPY pyproject.toml README.md ./
COPY app app
COPY agents agents
COPY tables tables
COPY schemas schemas
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data ingestflow \
    && mkdir -p /data/spool /data/tables /data/archive \
    && chown -R ingestflow /data
USER ingestflow
WORKDIR /data
# Listen on every interface of the container (ports are published on the host's 127.0.0.1 only).
ENV HOST=0.0.0.0 FILE_BUFFER_DIR=/data/spool TABLE_DIR=/data/tables PYTHONUNBUFFERED=1
EXPOSE 8787 6066
ENTRYPOINT ["ingestflow"]
CMD ["gateway"]
