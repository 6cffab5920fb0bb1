"""The seller projector is partitioned like the product one: every partition
reads each seller event and the first to get there applies it, so a seller's
row remembers the position of the last one applied. Existing rows start at
0: every seller event before now is behind every checkpoint. A projector
with checkpoints keeps its one partition until ``resize_partitions``."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("projections", "0010_checkpoint_partitions"),
    ]

    operations = [
        migrations.AddField(
            model_name="sellerreadmodel",
            name="details_position",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
    ]
