# The CDS service: slim, non-root, dependencies in their own layer.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY cards ./cards
RUN pip install --no-cache-dir .
COPY fixtures ./fixtures
RUN useradd --system --uid 10001 cds
USER cds
EXPOSE 8080
CMD ["cds-service", "serve", "--host", "0.0.0.0", "--port", "8080"]
