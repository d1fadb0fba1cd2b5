"""Querysets compiled once, for the hottest requests.

The ORM compiles a queryset into SQL anew on every evaluation. For the three
small queries of GET /v1/predictions/{id} (the token, the prediction with its
version and model, its outputs) compiling cost ~0.45 ms of CPU each, three to
four times what running them cost; bench/api_throughput.py measures the
difference. A Prepared query compiles its queryset once per database with
placeholders for the arguments, then runs that SQL with each call's values and
builds model instances as the ORM does (select_related included).

Only for querysets whose arguments reach the SQL unchanged, as parameters:
exact lookups on plain fields. Anything else (a lookup that rewrites its value,
an argument that is not a parameter) is refused when the query is first run,
not answered wrongly.
"""

import threading

from django.db import connections, router
from django.db.models.query import get_related_populators


class Prepared:
    """`Prepared(lambda key: Model.objects.filter(key=key))`, then `.all(value)`
    or `.first(value)`: the queryset the function builds for those values."""

    def __init__(self, build):
        self.build = build
        self._compiled = {}
        self._model = None
        self._lock = threading.Lock()

    def all(self, *args):
        compiled = self._compiled_for(args)
        connection = connections[compiled.alias]
        params = [args[slot] if slot is not None else value for slot, value in compiled.params]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        return [compiled.instance(row, connection) for row in rows]

    def first(self, *args):
        rows = self.all(*args)
        return rows[0] if rows else None

    def _compiled_for(self, args):
        # Compiled per database (alias and vendor: the SQL differs between them).
        alias = router.db_for_read(self._model) if self._model else None
        compiled = self._compiled.get((alias, alias and connections[alias].vendor))
        if compiled is None:
            with self._lock:
                self._model = self.build(*args).model
                alias = router.db_for_read(self._model)
                key = (alias, connections[alias].vendor)
                compiled = self._compiled.get(key) or _Compiled(self.build, len(args), alias)
                self._compiled[key] = compiled
        return compiled


class _Compiled:
    def __init__(self, build, arity, alias):
        markers = [f"\x00prepared-argument-{slot}\x00" for slot in range(arity)]
        queryset = self.queryset = build(*markers)
        compiler = queryset.query.get_compiler(using=alias)
        self.sql, params = compiler.as_sql()
        self.alias = alias
        self.params = []
        for value in params:
            slot = markers.index(value) if value in markers else None
            self.params.append((slot, value))
        used = [slot for slot, _ in self.params if slot is not None]
        if sorted(used) != list(range(arity)):
            raise ValueError(f"Arguments must reach the SQL once each, as they are: {queryset.query}")

        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        self.model = klass_info["model"]
        self.model_slice = slice(fields[0], fields[-1] + 1)
        self.init_list = [column[0].target.attname for column in select[self.model_slice]]
        self.populators = get_related_populators(klass_info, select, alias)
        self.converters = list(compiler.get_converters([column[0] for column in select[: compiler.col_count]]).items())

    def instance(self, row, connection):
        """The model instance of one row, as ModelIterable builds it."""
        if self.converters:
            row = list(row)
            for position, (converters, expression) in self.converters:
                value = row[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                row[position] = value
        obj = self.model.from_db(self.alias, self.init_list, row[self.model_slice])
        for populator in self.populators:
            populator.populate(row, obj)
        return obj
