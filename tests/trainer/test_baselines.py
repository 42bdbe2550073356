"""trainer.baselines: ingest's anomaly rule scored against hand-worked values."""

import numpy as np
import pytest

from trainer import baselines


def test_rule_auc_is_of_the_score_and_its_decision_is_point_in_time(tmp_path):
    table = tmp_path / "users.csv"
    table.write_text("user_id,events,max_events_per_window,robotic_windows,robotic_from,score\n"
                     "bot,40,20,1,1000,1.25\nslow,10,5,0,,0.3125\nhuman,12,6,0,,0.375\n")
    rows = baselines.read_anomaly_table(str(table))
    assert rows["bot"] == (1.25, 1000.0) and rows["slow"] == (0.3125, np.inf)
    # Examples: the bot at 900 (before its burst) and 1100, the slow bot, the human twice.
    users = ["bot", "bot", "slow", "human", "human"]
    labels = np.array([1, 1, 1, 0, 0])
    times = np.array([900, 1100, 1100, 1100, 1200])
    rule = (np.array([rows[u][0] for u in users]), np.array([rows[u][1] for u in users]))
    got = baselines.rule_metrics(labels, times, rule)
    # Scores 1.25, 1.25, 0.3125 (bots) against 0.375, 0.375 (human): the slow
    # bot loses both pairs, AUC (2 + 2 + 0) / 6. Flagged: only the bot at 1100.
    assert got["auc"] == pytest.approx(4 / 6)
    assert (got["precision"], got["recall"]) == pytest.approx((1.0, 1 / 3))
    assert got["flagged_rate"] == pytest.approx(1 / 5) and got["examples"] == 5
