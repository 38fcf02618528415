import pytest

from mask_od.label_map import LabelMapError, read_label_map, suggest_name, validate_names, write_label_map


def test_round_trip_and_od_api_text(tmp_path):
    p = write_label_map(["with_mask", "without_mask"], tmp_path / "label_map.pbtxt")
    assert "item {\n    id: 1\n    name: 'with_mask'\n}" in p.read_text()
    assert read_label_map(p) == {1: "with_mask", 2: "without_mask"}


def test_reads_od_api_style_with_comments_and_display_name(tmp_path):
    p = tmp_path / "lm.pbtxt"
    p.write_text('# mine\nitem {\n  name: "a"\n  id: 2\n  display_name: "A"\n}\nitem { id: 1 name: \'b\' }\n')
    assert read_label_map(p) == {1: "b", 2: "a"}


def test_duplicate_id_and_zero_id_refused(tmp_path):
    p = tmp_path / "lm.pbtxt"
    p.write_text("item { id: 1 name: 'a' } item { id: 1 name: 'b' }")
    with pytest.raises(LabelMapError, match="id 1 is used twice"):
        read_label_map(p)
    p.write_text("item { id: 0 name: 'a' }")
    with pytest.raises(LabelMapError, match="background"):
        read_label_map(p)


def test_unknown_names_list_every_file_and_suggest():
    lm = {1: "with_mask", 2: "without_mask"}
    with pytest.raises(LabelMapError) as e:
        validate_names({"a.xml": ["With_Mask "], "b.xml": ["with_mask", "With_Mask "], "c.xml": ["dog"]}, lm, "lm.pbtxt")
    msg = str(e.value)
    assert "'With_Mask '" in msg and "did you mean 'with_mask'" in msg
    assert "a.xml" in msg and "b.xml" in msg and "'dog'" in msg and "c.xml" in msg
    validate_names({"a.xml": ["with_mask"]}, lm)  # no error
    for files in ({"a.xml": ["with_mask", "without_mask"]}, {"a.xml": ["without_mask"]}):  # a class the label map
        with pytest.raises(LabelMapError) as e:  # lacks is not a typo of one it has: no hint that would merge them
            validate_names(files, {1: "with_mask"})
        assert "class 'without_mask' in 1 file(s)" in str(e.value) and "did you mean" not in str(e.value)
    three = {1: "with_mask", 2: "without_mask", 3: "mask_weared_incorrect"}
    for files, hint in (({"a.xml": ["withmask"]}, "'withmask' (did you mean 'with_mask'?)"),  # typos get it, also
                        ({"a.xml": ["with_mask"], "b.xml": ["wth_mask"]}, "'wth_mask' (did you mean 'with_mask'?)"),  # beside
                        ({"a.xml": ["without_mask", "withut_mask"]}, "'withut_mask' (did you mean 'without_mask'?)"),  # the
                        ({"a.xml": ["without_mask"], "b.xml": ["withou_mask", "with_mask"]}, "(did you mean 'without_mask'?)")):
        with pytest.raises(LabelMapError) as e:  # class they mean
            validate_names(files, three)
        assert hint in str(e.value), str(e.value)


def test_suggest_name():
    assert suggest_name("Mask", ["mask", "no_mask"]) == "mask"
    assert suggest_name("without-mask", ["with_mask", "without_mask"]) == "without_mask"
    assert suggest_name("zebra", ["with_mask"]) is None
