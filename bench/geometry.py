"""`python -m bench geometry`: how hard the protocol double's vectors are to search, next to a real model's.

The pipeline benchmark's speed depends on what its vectors look like: an HNSW search
for a query with close neighbours ends quickly, one among unrelated vectors wanders.
This puts the same texts through three geometries and searches each the same way:

- "model": the vectors the configured model (the CPU model by default) stored for the
  knowledge base, and its query vectors for labelled descriptions;
- "lexical" and "random": what the protocol double serves for the same texts
  (devservices/embedding_double.py, `--geometry`).

It reads the knowledge base of the database Django is configured with (run it where
`evaluate_hs` loaded and embedded the nomenclature), copies the three sets of vectors
into a scratch database `bench_geometry` on the same server (recreated each run), builds
the HNSW indexes as production does (one per script; m 16, ef_construction 64, or the
graphs given with --graphs) and searches 30 neighbours per description in batches of
500 on one connection, both script parts in one statement. Recall is the share of the
exact 30 (numpy over the same halfvec-rounded vectors) that the search returns.

JSON last line: queries_per_s and recall per geometry (first graph, first ef_search),
mean_cosine (descriptions to knowledge-base lines) per geometry, results (every
geometry x graph x ef_search), entries, queries.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from .common import REPOSITORY_ROOT, emit, machine_description

DATABASE_NAME = "bench_geometry"
DEFAULT_DESCRIPTIONS = [REPOSITORY_ROOT.parent / "shared" / "data" / "hsbench" / name
                        for name in ("hsbench_4digit_dev.csv", "hsbench_6digit_dev.csv")]
K = 30
BATCH = 500


def knowledge_base(space) -> tuple[list[int], list[str], np.ndarray]:
    """Ids, texts and stored vectors of every knowledge-base entry in the space (both script corpora)."""
    import psycopg
    from django.db import connection

    from embeddings.store import halfvec_from_binary
    from verifier.models import KNOWLEDGE_CORPORA

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            "SELECT vector.object_id, entry.text, vector.embedding FROM embeddings_vector vector "
            "JOIN verifier_knowledgeentry entry ON entry.id = vector.object_id "
            "WHERE vector.space_id = %s AND vector.corpus = ANY(%s) ORDER BY vector.object_id",
            [space.id, list(KNOWLEDGE_CORPORA)], binary=True,
        )
        rows = cursor.fetchall()
    if not rows:
        raise SystemExit("the knowledge base has no vectors in the active space: run evaluate_hs --nomenclature first")
    return ([row[0] for row in rows], [row[1] for row in rows],
            np.stack([halfvec_from_binary(bytes(row[2])) for row in rows]))


def read_descriptions(paths: list[Path]) -> list[str]:
    from verifier.labelled import read_labelled_csv
    from verifier.normalization import normalize_description

    descriptions: list[str] = []
    for path in paths:
        rows, _ = read_labelled_csv(path)
        descriptions += [text for row in rows if (text := normalize_description(row.description))]
    return descriptions


def halfvec_rounded(vectors: np.ndarray) -> np.ndarray:
    return vectors.astype(np.float16).astype(np.float32)


def search_speed_and_recall(database_url: str, geometries: dict, *, cjk: np.ndarray, graphs: list[tuple[int, int]],
                            ef_searches: list[int], log) -> list[dict]:
    """Load each geometry's vectors and, for each HNSW graph, index them one index per script (as production
    does) and search at each ef_search; one result per (geometry, graph, ef_search)."""
    import psycopg

    from embeddings.store import vector_literal

    results = []
    with psycopg.connect(database_url, autocommit=True) as database:
        database.execute("CREATE EXTENSION IF NOT EXISTS vector")
        dimensions = next(iter(geometries.values()))[0].shape[1]
        database.execute(f"CREATE TABLE geometry_vector (id bigint, geometry text, cjk boolean, "
                         f"embedding halfvec({dimensions}))")
        for name, (documents, _) in geometries.items():
            with database.cursor().copy("COPY geometry_vector (id, geometry, cjk, embedding) FROM STDIN") as copy:
                for number, (is_cjk, vector) in enumerate(zip(cjk.tolist(), documents)):
                    copy.write_row((number, name, is_cjk, vector_literal(vector)))
        database.execute("VACUUM ANALYZE geometry_vector")
        database.execute("SET maintenance_work_mem = '512MB'")
        for m, ef_construction in graphs:
            for name, (documents, queries) in geometries.items():
                log(f"{name} vectors, m {m}, ef_construction {ef_construction}")
                for part in ("cjk", "NOT cjk"):
                    database.execute(f'DROP INDEX IF EXISTS "geometry_{part.replace(" ", "_")}"')
                    database.execute(
                        f'CREATE INDEX "geometry_{part.replace(" ", "_")}" ON geometry_vector '
                        f"USING hnsw (embedding halfvec_cosine_ops) "
                        f"WITH (m = {m}, ef_construction = {ef_construction}) "
                        f"WHERE geometry = '{name}' AND {part}"
                    )
                exact = np.argsort(-(halfvec_rounded(queries) @ halfvec_rounded(documents).T), axis=1)[:, :K]
                arrays = ["{" + ",".join(f'"{vector_literal(vector)}"' for vector in queries[start:start + BATCH]) + "}"
                          for start in range(0, len(queries), BATCH)]
                for ef_search in ef_searches:
                    database.execute(f"SET hnsw.ef_search = {int(ef_search)}")
                    speed, recall = _search(database, name, arrays, exact)
                    results.append({"vectors": name, "m": m, "ef_construction": ef_construction, "ef_search": ef_search,
                                    "queries_per_s": round(speed), "recall": round(recall, 3)})
    return results


def _search(database, name: str, arrays: list[str], exact: np.ndarray) -> tuple[float, float]:
    """Queries/s and recall of the 30-nearest search, both script parts in one statement as in production."""
    branch = ("(SELECT id, embedding <=> queries.embedding AS distance FROM geometry_vector "
              f"WHERE geometry = '{name}' AND {{part}} ORDER BY embedding <=> queries.embedding LIMIT {K})")
    found: list[set[int]] = [set() for _ in exact]
    started = time.perf_counter()
    for batch, array in enumerate(arrays):
        rows = database.execute(
            f"""WITH queries AS MATERIALIZED (
                    SELECT position, embedding FROM unnest(%s::halfvec[]) WITH ORDINALITY AS q(embedding, position))
                SELECT queries.position, hit.id FROM queries CROSS JOIN LATERAL (
                    SELECT found.id FROM ({branch.format(part="cjk")} UNION ALL {branch.format(part="NOT cjk")})
                    AS found ORDER BY found.distance LIMIT {K}) AS hit""",
            [array],
        ).fetchall()
        for position, identifier in rows:
            found[batch * BATCH + position - 1].add(identifier)
    seconds = time.perf_counter() - started
    recall = float(np.mean([len(hits & set(truth.tolist())) / K for hits, truth in zip(found, exact)]))
    return len(exact) / seconds, recall


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench geometry", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--descriptions", nargs="+", type=Path, default=DEFAULT_DESCRIPTIONS,
                        help="labelled CSV files whose descriptions are the queries (default: the hsbench dev files)")
    parser.add_argument("--ef-search", default="200", help="comma-separated hnsw.ef_search values (default 200)")
    parser.add_argument("--graphs", default="16:64",
                        help="comma-separated HNSW graphs as m:ef_construction (default 16:64, production's)")
    parser.add_argument("--vectors", default="model,lexical,random",
                        help="comma-separated geometries to measure (default model,lexical,random)")
    arguments = parser.parse_args(argv)
    ef_searches = [int(value) for value in arguments.ef_search.split(",")]
    graphs = [tuple(int(part) for part in graph.split(":")) for graph in arguments.graphs.split(",")]
    wanted = arguments.vectors.split(",")

    def log(message: str) -> None:
        if not arguments.json:
            print(message, file=sys.stderr, flush=True)

    import django
    import psycopg

    django.setup()
    from django.db import connection

    from common.scripts import contains_cjk
    from devservices.embedding_double import VectorTable
    from embeddings.services import embed_queries
    from embeddings.store import active_space

    space = active_space()
    _, texts, model_documents = knowledge_base(space)
    descriptions = read_descriptions(arguments.descriptions)
    geometries = {}
    for name in wanted:
        if name == "model":
            geometries[name] = (model_documents, embed_queries(descriptions, task="hs_code", space=space))
        else:
            table = VectorTable(space.dimensions, geometry=name)
            geometries[name] = (table.vectors(texts, space.dimensions), table.vectors(descriptions, space.dimensions))
    mean_cosine = {name: round(float((queries[:200] @ documents.T).mean()), 3)
                   for name, (documents, queries) in geometries.items()}

    settings = connection.settings_dict
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    server = f"postgresql://{settings['USER']}{password}@{settings['HOST']}:{settings['PORT']}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}"')
        admin.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    results = search_speed_and_recall(
        f"{server}/{DATABASE_NAME}", geometries, cjk=np.array([contains_cjk(text) for text in texts]),
        graphs=graphs, ef_searches=ef_searches, log=log,
    )
    first = [result for result in results if (result["m"], result["ef_construction"]) == graphs[0]
             and result["ef_search"] == ef_searches[0]]
    emit({
        # The first graph at the first ef_search, per geometry; every combination is in `results`.
        "queries_per_s": {result["vectors"]: result["queries_per_s"] for result in first},
        "recall": {result["vectors"]: result["recall"] for result in first},
        "mean_cosine": mean_cosine, "results": results,
        "entries": len(texts), "queries": len(descriptions), "model": space.model_name,
        "details": {"machine": machine_description(), "server": urlsplit(server).hostname},
    }, as_json_only=arguments.json)


if __name__ == "__main__":
    main(sys.argv[1:])
