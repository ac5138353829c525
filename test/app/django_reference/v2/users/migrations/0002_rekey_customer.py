# State-only migration: Customer(User) [MTI child] -> Customer(models.Model)
# with own BigAutoField id and user = OneToOneField(AUTH_USER_MODEL).
# The database was already changed in place (outside Django).
from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion


class AlterModelBases(migrations.operations.base.Operation):
    """State-only: replace a model state's bases."""

    reduces_to_sql = False
    reversible = True

    def __init__(self, name, bases):
        self.name = name
        self.bases = bases

    def deconstruct(self):
        return (self.__class__.__qualname__, [], {'name': self.name, 'bases': self.bases})

    def state_forwards(self, app_label, state):
        model_state = state.models[app_label, self.name.lower()]
        model_state.bases = self.bases
        state.reload_model(app_label, self.name.lower(), delay=True)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def describe(self):
        return 'Alter bases of model %s to %r (state only)' % (self.name, self.bases)


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('users', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                # --- Customer ---
                AlterModelBases('customer', (models.Model,)),
                migrations.RemoveField(model_name='customer', name='user_ptr'),
                migrations.AddField(
                    model_name='customer',
                    name='id',
                    field=models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID'),
                    preserve_default=False,
                ),
                migrations.AddField(
                    model_name='customer',
                    name='user',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, to=settings.AUTH_USER_MODEL),
                    preserve_default=False,
                ),
                migrations.AlterModelOptions(name='customer', options={}),
                migrations.AlterModelManagers(name='customer', managers=[]),
                # --- HistoricalCustomer (simple_history) ---
                migrations.RemoveField(model_name='historicalcustomer', name='user_ptr'),
                migrations.RemoveField(model_name='historicalcustomer', name='password'),
                migrations.RemoveField(model_name='historicalcustomer', name='last_login'),
                migrations.RemoveField(model_name='historicalcustomer', name='is_superuser'),
                migrations.RemoveField(model_name='historicalcustomer', name='username'),
                migrations.RemoveField(model_name='historicalcustomer', name='first_name'),
                migrations.RemoveField(model_name='historicalcustomer', name='last_name'),
                migrations.RemoveField(model_name='historicalcustomer', name='email'),
                migrations.RemoveField(model_name='historicalcustomer', name='is_staff'),
                migrations.RemoveField(model_name='historicalcustomer', name='is_active'),
                migrations.RemoveField(model_name='historicalcustomer', name='date_joined'),
                migrations.AddField(
                    model_name='historicalcustomer',
                    name='user',
                    field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterModelOptions(
                    name='historicalcustomer',
                    options={'get_latest_by': ('history_date', 'history_id'), 'ordering': ('-history_date', '-history_id'), 'verbose_name': 'historical customer', 'verbose_name_plural': 'historical customers'},
                ),
            ],
        ),
    ]
