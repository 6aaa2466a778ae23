"""A trailing stop's anchor in its side's column (trail_high for sells, trail_low for buys), each
with a partial index, so that a quote finds the stops it moves with a range scan of each."""

from django.db import migrations, models

# The anchor moves to its side's column; back, either column is the anchor.
SPLIT_ANCHOR = """
UPDATE transactions_transaction
SET trail_high = CASE WHEN transaction_type = 'SELL' THEN trail_anchor END,
    trail_low = CASE WHEN transaction_type = 'BUY' THEN trail_anchor END
WHERE trail_anchor IS NOT NULL
"""
JOIN_ANCHOR = """
UPDATE transactions_transaction SET trail_anchor = coalesce(trail_high, trail_low)
WHERE trail_high IS NOT NULL OR trail_low IS NOT NULL
"""


class Migration(migrations.Migration):
    dependencies = [
        ("transactions", "0004_transfer"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="transaction", name="txn_open_trailing"),
        migrations.AddField(
            model_name="transaction",
            name="trail_high",
            field=models.DecimalField(blank=True, decimal_places=4, max_digits=18, null=True),
        ),
        migrations.AddField(
            model_name="transaction",
            name="trail_low",
            field=models.DecimalField(blank=True, decimal_places=4, max_digits=18, null=True),
        ),
        migrations.RunSQL(SPLIT_ANCHOR, reverse_sql=JOIN_ANCHOR),
        migrations.RemoveField(model_name="transaction", name="trail_anchor"),
        migrations.AddIndex(
            model_name="transaction",
            index=models.Index(
                condition=models.Q(
                    ("ready_price__isnull", True), ("status", "open"), ("trail_high__isnull", False)
                ),
                fields=["ticker", "trail_high"],
                name="txn_open_trail_high",
            ),
        ),
        migrations.AddIndex(
            model_name="transaction",
            index=models.Index(
                condition=models.Q(
                    ("ready_price__isnull", True), ("status", "open"), ("trail_low__isnull", False)
                ),
                fields=["ticker", "trail_low"],
                name="txn_open_trail_low",
            ),
        ),
    ]
