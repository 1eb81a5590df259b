# HeTu engine image: hetu-logic, hetu-gateway and hetu dev with the example apps.
# Used by compose.yaml; build with `docker build -t hetu .`.
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/hetu PATH=/opt/hetu/bin:$PATH
WORKDIR /srv/hetu
# Dependencies first, so editing app code does not reinstall them.
COPY pyproject.toml uv.lock ./
COPY packages/hetu-common/pyproject.toml packages/hetu-common/
COPY packages/hetu-logic/pyproject.toml packages/hetu-logic/
COPY packages/hetu-gateway/pyproject.toml packages/hetu-gateway/
COPY packages/hetu-sdkgen/pyproject.toml packages/hetu-sdkgen/
RUN uv sync --frozen --no-dev --no-install-workspace
COPY . .
RUN uv sync --frozen --no-dev --no-editable
USER nobody
