"""Full-text search over a user's messages: any language, ranked, paginated, only the user's own."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from tests.support.api import ADMIN, bearer, insert_api_key
from tests.support.db import create_user

MESSAGES = {
    "en": "The invoice for the cloud migration is overdue",
    "de": "Die Größe der Straßenbahn überrascht die Münchner Fahrgäste",
    "ru": "Пожалуйста, переведи этот договор на английский язык",
    "el": "Η συνάντηση μεταφέρθηκε στην Παρασκευή",
}


@pytest.fixture
async def searchable(db):
    owner, other = await create_user(db), await create_user(db)
    ids: dict[str, str] = {}
    async with db.begin() as conn:
        for user in (owner, other):
            conversation = uuid.uuid4()
            await conn.execute(text("INSERT INTO conversations (id, user_id, model) VALUES (:c, :u, 'm')"),
                               {"c": conversation, "u": user})
            for language, content in MESSAGES.items():
                message = uuid.uuid4()
                await conn.execute(
                    text("INSERT INTO messages (id, conversation_id, role, content) VALUES (:id, :c, 'user', :t)"),
                    {"id": message, "c": conversation, "t": content},
                )
                if user == owner:
                    ids[language] = str(message)
    return owner, ids


@pytest.mark.parametrize(
    ("query", "language"),
    [
        ("invoice overdue", "en"),
        ("INVOICE", "en"),
        ("Straßenbahn", "de"),
        ("größe", "de"),
        ("договор", "ru"),
        ("английский язык", "ru"),
        ("Παρασκευή", "el"),
    ],
)
async def test_search_finds_words_as_written_in_any_language(client, db, searchable, query, language) -> None:
    owner, ids = searchable
    _, key = await insert_api_key(db, owner)
    response = await client.get(f"/users/{owner}/messages/search", params={"q": query}, headers=bearer(key))
    assert response.status_code == 200, response.text
    hits = response.json()["items"]
    assert [hit["id"] for hit in hits] == [ids[language]], "only the owner's message, never the other user's"
    assert hits[0]["content"] == MESSAGES[language] and hits[0]["rank"] > 0


async def test_no_match_is_an_empty_page(client, searchable) -> None:
    owner, _ = searchable
    response = await client.get(f"/users/{owner}/messages/search", params={"q": "kubernetes"}, headers=ADMIN)
    assert response.json() == {"items": [], "next_cursor": None}


async def test_search_ranks_and_pages_without_repeats(client, db) -> None:
    user, conversation = await create_user(db), uuid.uuid4()
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO conversations (id, user_id, model) VALUES (:c, :u, 'm')"),
                           {"c": conversation, "u": user})
        for i in range(25):
            await conn.execute(
                text("INSERT INTO messages (id, conversation_id, role, content) VALUES (:id, :c, 'user', :t)"),
                {"id": uuid.uuid4(), "c": conversation, "t": " ".join(["budget"] * (1 + i % 5) + ["filler"] * 10)},
            )
    seen, ranks, cursor = [], [], None
    while True:
        params = {"q": "budget", "limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/users/{user}/messages/search", params=params, headers=ADMIN)).json()
        seen += [hit["id"] for hit in page["items"]]
        ranks += [hit["rank"] for hit in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1]
