"""One account per name: the canonical username (NFKC, case folded) in a unique column.

It replaces the unique index on LOWER(username), which it subsumes, and which let `nikς`
and `nikΣ` be two accounts (PostgreSQL's LOWER keeps a final sigma) and depended on the
database's locale. Existing rows are backfilled; if two of them share a canonical form, or
one's is too long for the column, the migration stops and names them.
"""

from collections import defaultdict

from django.db import migrations, models

from stockflow.text import canonical_username

# users.models.USERNAME_MAX_LENGTH when this was written (a migration keeps its own copy).
MAX_LENGTH = 150
BATCH = 1000


def backfill_canonical_usernames(apps, schema_editor):
    """Fill `username_canonical`, or fail loudly, naming the rows that stop it.

    An operator has to decide which account keeps a name (or what a too-long one becomes),
    so nothing is merged, renamed or cut here.
    """
    User = apps.get_model("users", "User")
    accounts = defaultdict(list)
    for pk, username in User.objects.order_by("id").values_list("id", "username").iterator():
        accounts[canonical_username(username)].append((pk, username))
    clashes = [rows for rows in accounts.values() if len(rows) > 1]
    too_long = [rows[0] for name, rows in accounts.items() if len(name) > MAX_LENGTH]
    problems = []
    if clashes:
        problems.append(
            "Usernames must be unique once case-folded and NFKC-normalised, but these "
            "accounts' names are one name; rename all but one in each group:\n"
            + "\n".join(
                "  " + ", ".join(f"id={pk} username={name!r}" for pk, name in rows)
                for rows in sorted(clashes)
            )
        )
    if too_long:
        problems.append(
            f"These names are longer than {MAX_LENGTH} characters once case-folded and "
            "NFKC-normalised; rename them:\n"
            + "\n".join(f"  id={pk} username={name!r}" for pk, name in sorted(too_long))
        )
    if problems:
        raise RuntimeError("\n".join(problems) + "\n(e.g. in the admin), then migrate again.")
    rows = [User(pk=pk, username_canonical=name) for name, ((pk, _),) in accounts.items()]
    User.objects.bulk_update(rows, ["username_canonical"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0003_reserved_cash"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="username_canonical",
            field=models.CharField(editable=False, max_length=MAX_LENGTH, null=True),
        ),
        migrations.RunPython(
            backfill_canonical_usernames, migrations.RunPython.noop, elidable=False
        ),
        migrations.AlterField(
            model_name="user",
            name="username_canonical",
            field=models.CharField(editable=False, max_length=MAX_LENGTH, unique=True),
        ),
        migrations.RemoveConstraint(
            model_name="user",
            name="user_username_unique_any_case",
        ),
    ]
