"""One exchange of messages with the sites, bounded by a timeout.

Flower's ``Grid.send_and_receive`` waits for every reply or the timeout; this loop also stops
waiting for a site whose SuperNode the SuperLink no longer lists (it left), and says for every
site without a usable reply why: no answer within the timeout, gone, or the ClientApp's error.
"""

from __future__ import annotations

import time

from flwr.app import Message
from flwr.serverapp import Grid

POLL_S = 0.5


def exchange(
    grid: Grid, messages: dict[str, Message], timeout: float
) -> tuple[dict[str, Message], dict[str, str]]:
    """Sends ``messages`` ({site: message}); returns (replies by site, {site: why no reply})."""
    ids = list(grid.push_messages(list(messages.values())))
    pending = dict(zip(ids, messages, strict=True))  # message id -> site
    node = {site: m.metadata.dst_node_id for site, m in messages.items()}
    replies, missing = {}, {}
    deadline = time.monotonic() + timeout
    while pending:
        for reply in grid.pull_messages(list(pending)):
            site = pending.pop(reply.metadata.reply_to_message_id, None)
            if site is None:
                continue
            if reply.has_error():
                missing[site] = f"site '{site}' failed: {reply.error.reason}"
            else:
                replies[site] = reply
        if not pending:
            break
        online = set(grid.get_node_ids())
        for mid, site in list(pending.items()):
            if node[site] not in online:
                missing[site] = f"site '{site}': its SuperNode left during the exchange"
                del pending[mid]
        if time.monotonic() > deadline:
            for site in pending.values():
                missing[site] = f"site '{site}' did not answer within {timeout:g} s"
            break
        time.sleep(POLL_S)
    return replies, missing
