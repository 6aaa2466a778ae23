# StockFlow: one image for every process of the Procfile (web, ws, worker, beat, flower).
# docker-compose.yml picks the process with `honcho start -f Procfile <process>`.
#
# 3.11.7 is the interpreter the project's virtualenv is built and tested with.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user with a real home: gunicorn puts its control socket in
# ~/.gunicorn/. The code itself stays owned by root, read-only to the app.
RUN groupadd --system --gid 10001 stockflow \
    && useradd --system --no-log-init --uid 10001 --gid stockflow \
        --create-home --home-dir /home/stockflow --shell /usr/sbin/nologin stockflow

WORKDIR /app

# Runtime requirements only (requirements-dev.txt stays out of the image). A layer of
# its own, so code changes do not reinstall them. psycopg2-binary ships libpq, so no
# apt packages are needed.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .

# The admin/Swagger assets WhiteNoise serves. With no DATABASE_URL, REDIS_URL or
# SECRET_KEY the settings load in embedded mode (built-in key), which is all
# collectstatic needs; nothing of it ends up in the image's environment.
RUN env -u DATABASE_URL -u REDIS_URL -u SECRET_KEY \
        python manage.py collectstatic --noinput -v0

# Numeric, so runtimes can verify non-root (e.g. Kubernetes runAsNonRoot).
USER 10001:10001

# web (gunicorn), ws (uvicorn: live updates) and flower.
EXPOSE 8000 8001 5555

# Healthchecks live in docker-compose.yml: they differ per process.
CMD ["honcho", "start", "-f", "Procfile", "web"]
