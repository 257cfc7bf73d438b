"""Rule-based rewards: each a pure function completion -> float, composed by weights in conf/reward/."""
