"""workers/slack.py, the Web API adapter, against tests/support/slack_web_standin.py."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from tests.support.slack_web_standin import BOT_USER, TEAM_URL, SlackWebStandIn
from workers.incident.errors import PermanentError, TransientError
from workers.slack import LIST_LIMIT, Channel, NameTaken, Slack, channel_name

TOKEN = "xoxb-111-222-s3cr3tT0k3n"
TIMEOUT_S = 5.0


@pytest.fixture
def standin() -> Iterator[SlackWebStandIn]:
    with SlackWebStandIn(token=TOKEN) as s:
        s.add_user("U0ALICE", "U0BOB", "U0CAROL")
        yield s


@pytest.fixture
def slack(standin: SlackWebStandIn) -> Slack:
    return Slack(TOKEN, base_url=standin.base_url, ca_bundle=standin.ca_path, timeout=TIMEOUT_S)


def test_create_channel_posts_json_with_the_bearer_token(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    channel = slack.create_channel("inc-20260115-api-latency-3fa9c1")

    assert channel == Channel(channel.id, "inc-20260115-api-latency-3fa9c1")
    assert standin.channels[channel.id]["members"] == [BOT_USER]
    assert standin.channels[channel.id]["is_private"] is False
    [sent] = standin.requests
    assert (sent.method, sent.path, sent.status) == ("POST", "/api/conversations.create", 200)
    assert sent.headers["authorization"] == "Bearer [valid]"
    assert sent.headers["content-type"] == "application/json; charset=utf-8"
    assert sent.body == {"name": "inc-20260115-api-latency-3fa9c1", "is_private": False}


def test_taken_name_raises_name_taken(slack: Slack, standin: SlackWebStandIn) -> None:
    standin.add_channel("inc-20260115-db-3fa9c1")

    with pytest.raises(NameTaken) as raised:
        slack.create_channel("inc-20260115-db-3fa9c1")

    assert raised.value.name == "inc-20260115-db-3fa9c1"
    assert len(standin.channels) == 1


def test_name_slack_refuses_is_a_permanent_error_with_its_code(slack: Slack) -> None:
    with pytest.raises(
        PermanentError, match=r"conversations\.create failed: invalid_name_specials"
    ):
        slack.create_channel("Incident 42")


def test_lost_create_answer_then_name_taken_then_find_channel_finds_it(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    name = channel_name("2026-01-15", "API latency", "a1b2c3d4e5f6-m1x2y3z")
    standin.drop_after_create()

    with pytest.raises(TransientError) as lost:
        slack.create_channel(name)
    with pytest.raises(NameTaken):
        slack.create_channel(name)
    found = slack.find_channel(name)

    assert lost.value.status is None  # no answer: the create may have happened
    [created] = standin.channels
    assert found == Channel(created, name)


def test_find_channel_follows_the_cursor_across_three_pages(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    for number in range(2 * LIST_LIMIT + 50):
        standin.add_channel(f"team-{number:04d}")
    wanted = standin.add_channel("inc-20260115-late-000000")

    assert slack.find_channel("inc-20260115-late-000000") == Channel(
        wanted, "inc-20260115-late-000000"
    )
    pages = standin.requests
    assert [r.path for r in pages] == ["/api/conversations.list"] * 3
    assert all(r.method == "GET" for r in pages)
    assert all(r.query["limit"] == "200" and r.query["exclude_archived"] == "true" for r in pages)
    assert "cursor" not in pages[0].query
    assert pages[1].query["cursor"] != pages[2].query["cursor"]


def test_find_channel_reads_on_past_a_page_emptied_of_archived_channels(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    for number in range(LIST_LIMIT):
        standin.add_channel(f"old-{number:04d}", archived=True)
    wanted = standin.add_channel("inc-20260115-x-000000")

    assert slack.find_channel("inc-20260115-x-000000") == Channel(wanted, "inc-20260115-x-000000")
    assert len(standin.requests) == 2


def test_find_channel_is_none_for_an_unknown_or_archived_name(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    standin.add_channel("inc-archived", archived=True)

    assert slack.find_channel("inc-nowhere") is None
    assert slack.find_channel("inc-archived") is None


def test_find_channel_stops_after_the_page_bound(slack: Slack, standin: SlackWebStandIn) -> None:
    for number in range(20 * LIST_LIMIT + 1):
        standin.add_channel(f"c-{number:05d}")

    with pytest.raises(PermanentError, match="not in the first 20 pages"):
        slack.find_channel("inc-nowhere")
    assert len(standin.requests) == 20


def test_set_topic_cuts_a_long_topic_to_250_characters(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    channel = slack.create_channel("inc-topic")

    slack.set_topic(channel.id, "API latency p99 > 2s " * 30)

    topic = standin.channels[channel.id]["topic"]["value"]
    assert 240 <= len(topic) <= 250  # cut, then the trailing space before "…" dropped
    assert topic.startswith("API latency p99 > 2s API") and topic.endswith("…")


def test_set_topic_keeps_a_topic_of_exactly_250_characters(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    channel = slack.create_channel("inc-topic")

    slack.set_topic(channel.id, "x" * 250)

    assert standin.channels[channel.id]["topic"]["value"] == "x" * 250


def test_invite_adds_members_and_a_member_again_is_fine(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    channel = slack.create_channel("inc-invite")

    slack.invite(channel.id, ["U0ALICE", "U0BOB"])
    slack.invite(channel.id, ["U0ALICE"])

    assert standin.channels[channel.id]["members"] == [BOT_USER, "U0ALICE", "U0BOB"]
    assert standin.requests[1].body == {"channel": channel.id, "users": "U0ALICE,U0BOB"}


def test_invite_with_one_member_already_in_still_invites_the_others(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    channel = slack.create_channel("inc-mixed")
    slack.invite(channel.id, ["U0ALICE"])

    slack.invite(channel.id, ["U0ALICE", "U0BOB", BOT_USER])

    assert standin.channels[channel.id]["members"] == [BOT_USER, "U0ALICE", "U0BOB"]


def test_invite_of_an_unknown_user_names_it_after_inviting_the_rest(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    channel = slack.create_channel("inc-unknown")

    with pytest.raises(PermanentError, match=r"not invited U0GHOST \(user_not_found\)"):
        slack.invite(channel.id, ["U0GHOST", "U0CAROL"])
    assert standin.channels[channel.id]["members"] == [BOT_USER, "U0CAROL"]


def test_post_returns_the_ts_of_the_message(slack: Slack, standin: SlackWebStandIn) -> None:
    channel = slack.create_channel("inc-post")

    ts = slack.post(channel.id, "Incident declared: API latency")

    [message] = standin.messages[channel.id]
    assert (message["ts"], message["text"]) == (ts, "Incident declared: API latency")


def test_post_to_a_channel_the_bot_is_not_in_is_permanent(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    channel_id = standin.add_channel("general", bot_member=False)

    with pytest.raises(PermanentError, match=r"chat\.postMessage failed: not_in_channel"):
        slack.post(channel_id, "hello")


def test_channel_url_uses_the_workspace_url_from_auth_test_once(
    slack: Slack, standin: SlackWebStandIn
) -> None:
    assert slack.channel_url("C0000000001") == f"{TEAM_URL}archives/C0000000001"
    assert slack.channel_url("C0000000002") == f"{TEAM_URL}archives/C0000000002"
    assert [r.path for r in standin.requests] == ["/api/auth.test"]


def test_rate_limit_is_transient_with_retry_after(slack: Slack, standin: SlackWebStandIn) -> None:
    standin.rate_limit_next(1, retry_after=7)

    with pytest.raises(TransientError) as limited:
        slack.create_channel("inc-limited")

    assert (limited.value.retry_after, limited.value.status) == (7.0, 429)
    assert standin.channels == {}
    assert slack.create_channel("inc-limited").name == "inc-limited"


def test_server_error_is_transient(slack: Slack, standin: SlackWebStandIn) -> None:
    standin.fail_next(503)

    with pytest.raises(TransientError, match="answered 503"):
        slack.post("C0000000001", "x")


def test_unreachable_slack_is_transient(standin: SlackWebStandIn) -> None:
    with SlackWebStandIn(token=TOKEN) as gone:
        base_url = gone.base_url
    slack = Slack(TOKEN, base_url=base_url, ca_bundle=standin.ca_path, timeout=TIMEOUT_S)

    with pytest.raises(TransientError, match="unreachable") as raised:
        slack.create_channel("inc-x")
    assert raised.value.status is None


def test_wrong_token_is_permanent_and_never_shown(
    standin: SlackWebStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "xoxb-999-888-wr0ngT0k3n"
    slack = Slack(wrong, base_url=standin.base_url, ca_bundle=standin.ca_path, timeout=TIMEOUT_S)

    with pytest.raises(PermanentError) as refused:
        slack.create_channel("inc-x")

    refusal = "Slack conversations.create: the bot token was refused (invalid_auth)"
    assert str(refused.value) == refusal
    assert wrong not in repr(refused.value) and wrong not in caplog.text
    assert standin.requests[0].headers["authorization"] == "Bearer [invalid]"
    assert TOKEN not in repr(standin.requests)


def test_empty_token_is_refused_at_construction(standin: SlackWebStandIn) -> None:
    with pytest.raises(ValueError, match="token is empty"):
        Slack("", base_url=standin.base_url, ca_bundle=standin.ca_path)


INCIDENT = "a1b2c3d4e5f6-m1x2y3z"


@pytest.mark.parametrize(
    ("date", "title", "slug"),
    [
        ("20260115", "API latency", "api-latency"),
        ("2026-01-15", "checkout-service", "checkout-service"),
        ("2026-01-15T09:30:00Z", "Ünïcödé façade: 5xx > 2%!", "unicode-facade-5xx-2"),
        ("20260115", "東京 outage", "outage"),
    ],
)
def test_channel_name_is_date_slug_and_a_hash_of_the_id(date: str, title: str, slug: str) -> None:
    name = channel_name(date, title, INCIDENT)

    assert re.fullmatch(rf"inc-20260115-{slug}-[0-9a-f]{{6}}", name)
    assert name == channel_name(date, title, INCIDENT)


@pytest.mark.parametrize("title", ["", "東京", "!!! ---"])
def test_channel_name_without_a_slug_keeps_date_and_hash(title: str) -> None:
    assert re.fullmatch(r"inc-20260115-[0-9a-f]{6}", channel_name("20260115", title, INCIDENT))


def test_channel_name_of_a_long_title_fits_slack_and_keeps_the_hash() -> None:
    name = channel_name("20260115", "Very long alert summary " * 10, INCIDENT)

    assert len(name) <= 80
    assert name.endswith(channel_name("20260115", "", INCIDENT)[-7:])
    assert "--" not in name


def test_channel_names_differ_for_incidents_of_one_alert_group() -> None:
    first = channel_name("20260115", "API latency", "a1b2c3d4e5f6-m1x2y3z")
    second = channel_name("20260115", "API latency", "a1b2c3d4e5f6-m1x2zz0")

    assert first != second


def test_channel_name_is_one_slack_accepts(slack: Slack) -> None:
    name = channel_name("20260115", "Ünïcödé " * 20, INCIDENT)

    assert slack.create_channel(name).name == name


def test_channel_name_refuses_a_date_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="got '15/01/2026'"):
        channel_name("15/01/2026", "API", INCIDENT)
