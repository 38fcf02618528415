from conftest import tree_digest
from mask_od.annotations import parse_voc_dir
from mask_od.split import split_annotations, write_split
from mask_od.synthetic import make_synthetic_dataset


def test_split_is_seeded_stratified_and_disjoint(tmp_path):
    d = make_synthetic_dataset(tmp_path / "d", num_images=60, size=96, seed=3)
    anns = parse_voc_dir(d.xml_dir)
    a = split_annotations(anns, 0.25, 0.1, seed=7)
    b = split_annotations(anns, 0.25, 0.1, seed=7)
    c = split_annotations(anns, 0.25, 0.1, seed=8)
    names = lambda s: [x.xml_path.name for x in s]  # noqa: E731
    assert names(a.train) == names(b.train) and names(a.test) == names(b.test)
    assert names(a.test) != names(c.test)
    assert not set(names(a.train)) & set(names(a.test)) and not set(names(a.val)) & set(names(a.test))
    assert len(a.train) + len(a.test) + len(a.val) == 60
    assert 12 <= len(a.test) <= 18
    # every class of the data reaches the test split
    assert {n for x in a.test for n in x.names} == {n for x in anns for n in x.names}


def test_write_split_copies_and_never_moves(tmp_path):
    d = make_synthetic_dataset(tmp_path / "d", num_images=10, size=96, seed=3)
    before = tree_digest(tmp_path / "d")
    sp = split_annotations(parse_voc_dir(d.xml_dir), 0.3, seed=0)
    out = write_split(sp, tmp_path / "images")
    assert tree_digest(tmp_path / "d") == before
    assert len(list((tmp_path / "images" / "test").glob("*.xml"))) == len(sp.test)
    assert len(list((tmp_path / "images" / "train").glob("*.jpg"))) == len(sp.train)
    assert out["test"].read_text().count("\n") == len(sp.test)
    write_split(sp, tmp_path / "images")  # same files again: fine, nothing replaced
