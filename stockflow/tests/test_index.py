"""`GET /`: the server's name and version, and links that each answer."""

import tomllib
from pathlib import Path

import pytest

import stockflow

BASE_DIR = Path(__file__).resolve().parents[2]
LINKS = {
    "swagger": "/swagger/",
    "schema": "/swagger.json",
    "redoc": "/redoc/",
    "health": "/health/",
    "admin": "/admin/",
}


@pytest.mark.parametrize("path", ["/", "/api/"])
def test_the_index_names_the_server_and_links_docs_health_and_admin(api_client, path):
    response = api_client.get(path)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"name": "StockFlow", "version": "0.1.0", "links": LINKS}


def test_the_index_ignores_a_bad_token(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token nonsense")

    assert api_client.get("/").status_code == 200


@pytest.mark.django_db
def test_every_link_of_the_index_answers(api_client):
    links = api_client.get("/").json()["links"]

    statuses = {name: api_client.get(link).status_code for name, link in links.items()}
    admin = api_client.get(links["admin"])

    assert statuses == {"swagger": 200, "schema": 200, "redoc": 200, "health": 200, "admin": 302}
    assert admin["Location"] == "/admin/login/?next=/admin/"


def test_the_version_is_the_one_in_pyproject():
    with open(BASE_DIR / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]

    assert stockflow.__version__ == project["version"]
