"""parse_bucket and the URLs built from a Bucket (pure string work)."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cod_retrieve import Bucket, BucketError, UidError, parse_bucket
from cod_retrieve.bucket import DEFAULT_API

ST = "1.2.840.113619.2.55.3"
SE = "1.2.840.113619.2.55.3.7"


# -- string form: the four documented examples -----------------------------------------

@pytest.mark.parametrize("url, name, prefix", [
    ("https://my-domain.com/my-bucket?token=my-token", "my-bucket", "dicomweb"),
    ("https://my-domain.com/my-bucket/my-prefix?token=my-token", "my-bucket", "my-prefix/dicomweb"),
    ("https://my-domain.com/my-bucket?token=my-token&my-query=something", "my-bucket", "dicomweb"),
    ("https://my-domain.com/my-bucket/my/prefix/parts?token=my-token", "my-bucket", "my/prefix/parts/dicomweb"),
])
def test_string_form_documented_examples(url, name, prefix):
    b = parse_bucket(url)
    assert b.name == name
    assert b.prefix == prefix
    assert b.token == "my-token"
    assert b.api_base == DEFAULT_API      # the page's host is not the API
    assert b.tar_name(ST, SE) == f"{prefix}/studies/{ST}/series/{SE}.tar"


def test_string_form_trailing_slash_and_no_token():
    b = parse_bucket("https://my-domain.com/my-bucket/my-prefix/")
    assert (b.name, b.prefix, b.token) == ("my-bucket", "my-prefix/dicomweb", None)


def test_string_form_api_base_passed_through():
    b = parse_bucket("https://x.org/bkt?token=t", api_base="http://127.0.0.1:9999/")
    assert b.tar_url(ST, SE) == f"http://127.0.0.1:9999/bkt/dicomweb/studies/{ST}/series/{SE}.tar"


# -- object form ------------------------------------------------------------------------

@pytest.mark.parametrize("prefix, root", [
    (None, "studies/"),
    ("", "studies/"),
    ("my-prefix", "my-prefix/studies/"),
    ("my-prefix/dicomweb", "my-prefix/dicomweb/studies/"),
    ("/my-prefix/dicomweb/", "my-prefix/dicomweb/studies/"),
])
def test_object_form_prefix(prefix, root):
    b = parse_bucket({"bucket": "my-bucket", "bucketPrefix": prefix, "token": "t"})
    assert b.series_folder(ST) == f"{root}{ST}/series/"
    assert b.tar_name(ST, SE) == f"{root}{ST}/series/{SE}.tar"
    assert b.metadata_name(ST, SE) == f"{root}{ST}/series/{SE}/metadata.json"
    for url in (b.list_url(ST), b.metadata_url(ST, SE), b.tar_url(ST, SE)):
        assert "null" not in url and "None" not in url
        assert "//studies" not in unquote(url)


def test_object_form_missing_prefix_key_is_root():
    b = parse_bucket({"bucket": "my-bucket", "token": "t"})
    assert b.prefix == "" and b.tar_name(ST, SE).startswith("studies/")


# -- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("url, word", [
    ("my-bucket/my-prefix", "https://"),
    ("ftp://host/my-bucket", "https://"),
    ("https:///my-bucket", "https://"),
    ("https://host/", "no bucket"),
    ("https://host", "no bucket"),
    ("https://[::1/my-bucket", "malformed"),
])
def test_malformed_urls(url, word):
    with pytest.raises(BucketError) as e:
        parse_bucket(url)
    assert word in str(e.value)


@pytest.mark.parametrize("name", ["My-Bucket", "ab", "-bucket", "bucket-", "bu..cket", "bu cket",
                                  "bucket/x", "b" * 300, "bücket"])
def test_bad_bucket_names(name):
    with pytest.raises(BucketError) as e:
        parse_bucket({"bucket": name, "bucketPrefix": "p"})
    assert "bucket name" in str(e.value) and repr(name)[:20] in str(e.value)


def test_bad_bucket_name_in_url():
    with pytest.raises(BucketError, match="bucket name"):
        parse_bucket("https://host/Bad_Bucket!/x?token=t")


@pytest.mark.parametrize("prefix", ["../x", "a/../b", "a/./b", "a//b", ".."])
def test_dotdot_and_empty_prefix_parts(prefix):
    with pytest.raises(BucketError) as e:
        parse_bucket({"bucket": "my-bucket", "bucketPrefix": prefix})
    assert "prefix" in str(e.value)


def test_dotdot_in_url_prefix():
    with pytest.raises(BucketError, match="prefix"):
        parse_bucket("https://host/my-bucket/../other?token=t")


def test_object_form_errors():
    with pytest.raises(BucketError, match="no 'bucket'"):
        parse_bucket({"bucketPrefix": "x"})
    with pytest.raises(BucketError, match="not a string"):
        parse_bucket({"bucket": "my-bucket", "bucketPrefix": 5})
    with pytest.raises(BucketError, match="URL string or an object"):
        parse_bucket(42)
    with pytest.raises(BucketError, match="API base"):
        Bucket("my-bucket", "", None, "file:///etc")


@pytest.mark.parametrize("study", ["../1.2", "1.2/3", "abc", "", "1..2", "1.2.", "1" * 65, "1.2\n3", " 1.2"])
def test_non_uid_study_refused(study):
    b = Bucket("my-bucket", "dicomweb")
    for build in (b.list_url, b.series_folder, lambda s: b.tar_url(s, SE), lambda s: b.metadata_url(s, SE)):
        with pytest.raises(UidError) as e:
            build(study)
        assert "study UID" in str(e.value)


def test_uid_with_trailing_newline_refused():
    b = Bucket("my-bucket", "dicomweb")
    with pytest.raises(UidError):
        b.tar_url(ST + "\n", SE)


def test_non_uid_series_refused():
    b = Bucket("my-bucket", "dicomweb")
    with pytest.raises(UidError, match="series UID"):
        b.tar_url(ST, "../../x")
    with pytest.raises(UidError, match="series UID"):
        b.metadata_url(ST, "1.2/..")


# -- URL shapes -------------------------------------------------------------------------

def test_url_shapes():
    b = Bucket("my-bucket", "my/prefix/dicomweb", "secret-token", "http://127.0.0.1:4443/")
    lst = urlsplit(b.list_url(ST))
    assert (lst.scheme, lst.netloc, lst.path) == ("http", "127.0.0.1:4443", "/storage/v1/b/my-bucket/o")
    q = parse_qs(lst.query)
    assert q == {"prefix": [f"my/prefix/dicomweb/studies/{ST}/series/"], "delimiter": ["/"]}

    q = parse_qs(urlsplit(b.list_url(ST, page_token="abc/+=", page_size=50)).query)
    assert q["pageToken"] == ["abc/+="] and q["maxResults"] == ["50"]
    assert "maxResults" not in b.list_url(ST) and "pageToken" not in b.list_url(ST)

    meta = b.metadata_url(ST, SE)
    name = f"my/prefix/dicomweb/studies/{ST}/series/{SE}/metadata.json"
    assert meta == f"http://127.0.0.1:4443/storage/v1/b/my-bucket/o/{name.replace('/', '%2F')}?alt=media"

    tar = b.tar_url(ST, SE)
    assert tar == f"http://127.0.0.1:4443/my-bucket/my/prefix/dicomweb/studies/{ST}/series/{SE}.tar"
    for url in (b.list_url(ST), meta, tar):
        assert "secret-token" not in url


def test_token_never_in_repr():
    b = parse_bucket("https://host/my-bucket/p?token=very-secret-123")
    assert b.token == "very-secret-123"
    assert "very-secret-123" not in repr(b) and "very-secret-123" not in str(b)
    b2 = parse_bucket({"bucket": "my-bucket", "bucketPrefix": None, "token": "other-secret-456"})
    assert "other-secret-456" not in repr(b2)
    assert "other-secret-456" not in repr(b2.with_token("x"))
    assert "zzz-new" not in repr(b2.with_token("zzz-new")) and b2.with_token("zzz-new").token == "zzz-new"


def test_special_characters_in_prefix_are_quoted_once():
    b = Bucket("my-bucket", "a b/c?d#e%f")
    assert b.tar_url(ST, SE) == f"{DEFAULT_API}/my-bucket/a%20b/c%3Fd%23e%25f/studies/{ST}/series/{SE}.tar"
    meta = urlsplit(b.metadata_url(ST, SE))
    assert unquote(meta.path.rsplit("/o/", 1)[1]) == f"a b/c?d#e%f/studies/{ST}/series/{SE}/metadata.json"
    assert parse_qs(urlsplit(b.list_url(ST)).query)["prefix"] == [f"a b/c?d#e%f/studies/{ST}/series/"]


def test_percent_encoded_url_prefix_is_decoded():
    b = parse_bucket("https://my-domain.com/my-bucket/my%20prefix?token=t")
    assert b.prefix == "my prefix/dicomweb"
