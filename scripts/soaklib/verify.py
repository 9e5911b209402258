"""The soak's final checks, read from the SQLite file after the host has quit:
the store against what the clients sent and were acknowledged, and what each
client kept against the store. Each check is a row (name, value, passed)."""

import json
import sqlite3
from collections import defaultdict

from .client import body_of


def check_store(db_path, clients, groups):
    """Rows for the store and for every client's received set; `groups` maps a group to its members."""
    sent = {}  # (sender, id) -> (conv, pad)
    for client in clients:
        for mid, record in client.sent.items():
            sent[(client.user, mid)] = record

    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        conv_rows = defaultdict(dict)  # conv -> seq -> id
        stored = {}  # (sender, id) -> (conv, seq)
        doubled = unknown = altered = 0
        # Row by row: the slow readers' floods make the bodies large.
        for conv, seq, sender, mid, body in db.execute("SELECT conv, seq, sender, client_id, body FROM messages"):
            key = (sender, mid)
            if key in stored or seq in conv_rows[conv]:
                doubled += 1
            stored[key] = (conv, seq)
            conv_rows[conv][seq] = mid
            record = sent.get(key)
            if record is None:
                unknown += 1
            elif record[0] != conv or json.loads(body) != body_of(mid, record[1]):
                altered += 1
        last_seqs = dict(db.execute("SELECT conv, last_seq FROM conversations"))
        stored_members = defaultdict(set)
        for group, user in db.execute("SELECT grp, user FROM group_members"):
            stored_members[group].add(user)
    finally:
        db.close()

    gapped = sum(
        1
        for conv, seqs in conv_rows.items()
        if sorted(seqs) != list(range(1, len(seqs) + 1)) or last_seqs.get(conv) != len(seqs)
    )
    acked = missing = misplaced = 0
    unacked = refused = 0
    for client in clients:
        for mid, ack in client.acks.items():
            acked += 1
            where = stored.get((client.user, mid))
            if where is None:
                missing += 1
            elif where != ack:
                misplaced += 1
        unacked += len(client.pending) + len(client.backlog)
        refused += len(client.refused_for_good)

    rows = [
        ("messages in the store", len(stored), None),
        ("conversations", len(conv_rows), None),
        ("acknowledged messages missing from the store", f"{missing} of {acked}", missing == 0),
        ("acknowledged messages at another conv/seq than their ack", misplaced, misplaced == 0),
        ("stored messages twice (same sender and id, or same conv and seq)", doubled, doubled == 0),
        ("stored messages no client sent, or with another body or conv", unknown + altered, unknown + altered == 0),
        ("conversations with a gap in seq (or last_seq off)", gapped, gapped == 0),
        ("sends never acknowledged (after the final retries)", unacked, unacked == 0),
        ("sends refused for good", refused, refused == 0),
        (
            "group members as joined",
            "same" if dict(stored_members) == groups else "differ",
            dict(stored_members) == groups,
        ),
    ]
    return rows + check_clients(clients, groups, conv_rows)


def check_clients(clients, groups, conv_rows):
    """Rows comparing each client's kept messages (live and synced) with its conversations in the store."""
    member_of = defaultdict(set)
    for group, members in groups.items():
        for user in members:
            member_of[user].add(f"g:{group}")
    convs_of = defaultdict(set)
    for conv in conv_rows:
        if conv.startswith("dm:"):
            _, low, high = conv.split(":")
            convs_of[low].add(conv)
            convs_of[high].add(conv)

    exact = missing = extra = different = wrong_lists = 0
    for client in clients:
        expected = convs_of[client.user] | member_of[client.user]
        client_ok = True
        for conv in expected | set(client.have):
            want = conv_rows.get(conv, {}) if conv in expected else {}
            have = client.have.get(conv, {})
            if have == want:
                continue
            client_ok = False
            missing += len(want.keys() - have.keys())
            extra += len(have.keys() - want.keys())
            different += sum(1 for seq in have.keys() & want.keys() if have[seq] != want[seq])
        if client.server_convs != expected:
            wrong_lists += 1
            client_ok = False
        exact += client_ok

    problems = [problem for client in clients for problem in client.problems]
    total_problems = sum(client.counts["problems"] for client in clients)
    return [
        (
            "clients whose received set is exactly their conversations' messages",
            f"{exact} of {len(clients)}",
            exact == len(clients),
        ),
        ("messages a client should have but does not", missing, missing == 0),
        ("messages a client has but should not", extra, extra == 0),
        ("messages a client has with another id than the store", different, different == 0),
        ("clients whose final sync named other conversations than theirs", wrong_lists, wrong_lists == 0),
        (
            "protocol problems seen by clients" + (f" (first: {problems[0]})" if problems else ""),
            total_problems,
            total_problems == 0,
        ),
    ]
