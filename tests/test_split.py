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



def test_second_split_into_the_same_folder_is_refused_or_replaces_the_first(tmp_path):
    """Issue 13.3: two splits with different seeds must never leave an image in both train/ and test/."""
    import pytest

    d = make_synthetic_dataset(tmp_path / "d", num_images=20, size=96, seed=3)
    anns = parse_voc_dir(d.xml_dir)
    write_split(split_annotations(anns, 0.2, seed=0), tmp_path / "images")
    second = split_annotations(anns, 0.2, seed=1)
    with pytest.raises(FileExistsError, match="earlier split.*--overwrite"):
        write_split(second, tmp_path / "images")
    write_split(second, tmp_path / "images", overwrite=True)
    train = {p.name for p in (tmp_path / "images" / "train").glob("*.jpg")}
    test = {p.name for p in (tmp_path / "images" / "test").glob("*.jpg")}
    assert not train & test and len(train) == len(second.train) and len(test) == len(second.test)
    # a source folder is never cleared, even with overwrite
    with pytest.raises(FileExistsError, match="holds the source files"):
        write_split(second, d.xml_dir.parent, overwrite=True) if d.xml_dir.name in ("train", "test") else write_split(
            split_annotations(parse_voc_dir(tmp_path / "images" / "train"), 0.3, seed=0), tmp_path / "images", overwrite=True)


def test_empty_test_split_is_an_error_not_a_crash(tmp_path):
    import pytest

    d = make_synthetic_dataset(tmp_path / "d", num_images=2, size=96, seed=3)
    with pytest.raises(ValueError, match="leave the test part empty"):
        split_annotations(parse_voc_dir(d.xml_dir), 0.1, seed=0)
