#include "common/crypto/crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sphere::crypto {
namespace {

std::string Unhex(absl::string_view hex) {
  auto bytes = HexDecode(hex);
  EXPECT_TRUE(bytes.ok()) << hex;
  return bytes.ok() ? *bytes : "";
}

// DER INTEGER for a big-endian unsigned value (minimal encoding).
std::string DerInt(std::string v) {
  while (v.size() > 1 && v[0] == 0 && !(static_cast<uint8_t>(v[1]) & 0x80)) {
    v.erase(0, 1);
  }
  if (static_cast<uint8_t>(v[0]) & 0x80) v.insert(0, 1, '\0');
  return std::string("\x02", 1) + static_cast<char>(v.size()) + v;
}

std::string DerSig(absl::string_view r_hex, absl::string_view s_hex) {
  std::string body = DerInt(Unhex(r_hex)) + DerInt(Unhex(s_hex));
  return std::string("\x30", 1) + static_cast<char>(body.size()) + body;
}

TEST(BackendTest, SelectedByConfig) {
#ifdef SPHERE_EXPECT_BORINGSSL
  EXPECT_EQ(BackendName(), "BoringSSL");
#else
  EXPECT_THAT(BackendName(), ::testing::StartsWith("OpenSSL"));
#endif
}

// ---- Digests, MACs, hex -------------------------------------------------

TEST(Sha256Test, Fips180Vectors) {
  EXPECT_EQ(HexEncode(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HexEncode(Sha256(
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

// Sha256 (the block functions) agrees with EVP's SHA-256 at every length
// around the 64-byte block and its 56-byte padding boundary.
TEST(Sha256Test, AgreesWithEvpDigestAtEveryLengthAroundTheBlock) {
  for (size_t n = 0; n <= 200; ++n) {
    const std::string data(n, static_cast<char>(0x21 + n));
    uint8_t want[32];
    unsigned int len = 0;
    ASSERT_EQ(EVP_Digest(data.data(), data.size(), want, &len, EVP_sha256(),
                         nullptr),
              1);
    ASSERT_EQ(len, 32u);
    EXPECT_EQ(Sha256(data), std::string(reinterpret_cast<const char*>(want), 32))
        << "length " << n;
  }
}

// Many threads hashing at once get the same answers (no shared state).
TEST(Sha256Test, ConcurrentCallsAgree) {
  const std::string data(300, 'q');
  const std::string want = Sha256(data);
  const std::string key(32, 'k');
  const std::string want_mac = HmacSha256(key, data);
  std::vector<std::thread> threads;
  std::vector<int> wrong(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        if (Sha256(data) != want || HmacSha256(key, data) != want_mac) {
          ++wrong[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(wrong, ::testing::Each(0));
}

TEST(HmacSha256Test, Rfc4231) {
  // Test case 1.
  EXPECT_EQ(HexEncode(HmacSha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  // Test case 2.
  EXPECT_EQ(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block size is hashed first.
  EXPECT_EQ(
      HexEncode(HmacSha256(std::string(131, '\xaa'),
                           "Test Using Larger Than Block-Size Key - Hash Key "
                           "First")),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

// The written-out HMAC agrees with the library's one-shot HMAC() at every
// key length around the block size (0, 1, 63, 64, 65, 200) and for empty data.
TEST(HmacSha256Test, AgreesWithOneShotHmacAtEveryKeyLength) {
  for (size_t key_len : {0, 1, 32, 63, 64, 65, 200}) {
    for (size_t data_len : {0, 1, 64, 1000}) {
      const std::string key(key_len, static_cast<char>(0x5a + key_len));
      const std::string data(data_len, static_cast<char>(0x17 + data_len));
      uint8_t want[32];
      unsigned int len = 0;
      static const uint8_t kEmpty = 0;
      ASSERT_NE(HMAC(EVP_sha256(),
                     key.empty() ? &kEmpty
                                 : reinterpret_cast<const uint8_t*>(key.data()),
                     static_cast<int>(key.size()),
                     data.empty()
                         ? &kEmpty
                         : reinterpret_cast<const uint8_t*>(data.data()),
                     data.size(), want, &len),
                nullptr);
      ASSERT_EQ(len, 32u);
      EXPECT_EQ(HmacSha256(key, data),
                std::string(reinterpret_cast<const char*>(want), 32))
          << "key " << key_len << " data " << data_len;
    }
  }
}

TEST(HexTest, RoundTripAndErrors) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(*HexDecode(HexEncode(all)), all);
  EXPECT_EQ(HexEncode("\x01\xab"), "01ab");
  EXPECT_EQ(*HexDecode("01AB"), "\x01\xab");
  EXPECT_EQ(*HexDecode(""), "");
  EXPECT_EQ(HexDecode("abc").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HexDecode("zz").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HexDecode("0g").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ConstantTimeEqualsTest, Basic) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

TEST(RandomBytesTest, LengthAndDistinct) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  std::string a = RandomBytes(32), b = RandomBytes(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
}

// Small requests come from a per-thread pool of one RAND_bytes draw: across
// many refills no value is handed out twice (64-bit values: a repeat by
// chance has probability ~2^-38 here).
TEST(RandomBytesTest, PooledBytesAreNeverHandedOutTwice) {
  std::set<std::string> seen;
  for (int i = 0; i < 20000; ++i) {  // 20,000 x 8 bytes: ~312 pool refills
    std::string r = RandomBytes(8);
    ASSERT_EQ(r.size(), 8u);
    EXPECT_TRUE(seen.insert(r).second) << "value " << i << " repeated";
  }
  // Odd sizes around the pool's request limit and its size keep their
  // length and are distinct too.
  for (size_t n : {1u, 31u, 63u, 64u, 65u, 511u, 512u, 513u, 4096u}) {
    std::string a = RandomBytes(n), b = RandomBytes(n);
    EXPECT_EQ(a.size(), n);
    EXPECT_EQ(b.size(), n);
    if (n >= 8) EXPECT_NE(a, b) << n;
  }
}

TEST(RandomBytesTest, ThreadsGetDistinctBytes) {
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<std::vector<std::string>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&got, t] {
      for (int i = 0; i < kEach; ++i) got[t].push_back(RandomBytes(16));
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> seen;
  for (const auto& v : got) {
    for (const auto& r : v) EXPECT_TRUE(seen.insert(r).second);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kEach));
}

// A forked child must not hand out the bytes its parent's pool still holds
// (they would repeat the parent's next nonce or key): the child's pool is
// discarded after fork().
TEST(RandomBytesTest, ForkedChildDoesNotRepeatTheParentsPooledBytes) {
  RandomBytes(8);  // the pool now holds 504 bytes not handed out yet
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::string r = RandomBytes(32);
    ssize_t w = write(fds[1], r.data(), r.size());
    _exit(w == static_cast<ssize_t>(r.size()) ? 0 : 1);
  }
  close(fds[1]);
  std::string from_child(32, '\0');
  size_t got = 0;
  while (got < from_child.size()) {
    ssize_t r = read(fds[0], &from_child[got], from_child.size() - got);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(got, 32u);
  std::string parent_next = RandomBytes(32);
  EXPECT_NE(from_child, parent_next);
}

// ---- ECDSA --------------------------------------------------------------

// RFC 6979 A.2.5 (P-256).
constexpr absl::string_view kRfc6979Priv =
    "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
constexpr absl::string_view kRfc6979Ux =
    "60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6";
constexpr absl::string_view kRfc6979Uy =
    "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";

std::string Rfc6979Public() {
  return "\x04" + Unhex(kRfc6979Ux) + Unhex(kRfc6979Uy);
}

TEST(EcdsaTest, Rfc6979PublicKeyDerivation) {
  auto key = EcPrivateKey::FromScalar(Unhex(kRfc6979Priv));
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(HexEncode(key->PublicKey()), HexEncode(Rfc6979Public()));
}

TEST(EcdsaTest, Rfc6979VerifySample) {
  std::string sig = DerSig(
      "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
      "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8");
  EXPECT_TRUE(EcdsaVerify(Rfc6979Public(), "sample", sig).ok());
  EXPECT_TRUE(EcdsaVerifyDigest(Rfc6979Public(), Sha256("sample"), sig).ok());
  std::string sig_test = DerSig(
      "f1abb023518351cd71d881567b1ea663ed3efcf6c5132b354f28d3b0b7d38367",
      "019f4113742a2b14bd25926b49c649155f267e60d3814b4c0cc84250e46f0083");
  EXPECT_TRUE(EcdsaVerify(Rfc6979Public(), "test", sig_test).ok());
  // Signatures do not transfer between messages.
  EXPECT_EQ(EcdsaVerify(Rfc6979Public(), "test", sig).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(EcdsaTest, SignVerifyRoundTrip) {
  EcPrivateKey key = EcPrivateKey::Generate();
  ASSERT_TRUE(key.valid());
  std::string pub = key.PublicKey();
  ASSERT_EQ(pub.size(), 65u);
  EXPECT_EQ(pub[0], '\x04');
  auto sig = key.Sign("hello");
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_TRUE(EcdsaVerify(pub, "hello", *sig).ok());
  auto sig2 = key.SignDigest(Sha256("hello"));
  ASSERT_TRUE(sig2.ok());
  EXPECT_TRUE(EcdsaVerify(pub, "hello", *sig2).ok());
  EXPECT_EQ(EcdsaVerify(pub, "hellO", *sig).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(EcdsaTest, TamperedSignatureRejected) {
  EcPrivateKey key = EcPrivateKey::Generate();
  std::string sig = *key.Sign("msg");
  std::string bad = sig;
  bad.back() ^= 0x01;  // flips a bit of s; DER stays well-formed
  EXPECT_EQ(EcdsaVerify(key.PublicKey(), "msg", bad).code(),
            absl::StatusCode::kUnauthenticated);
  // Malformed DER.
  EXPECT_EQ(EcdsaVerify(key.PublicKey(), "msg", sig.substr(0, 10)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EcdsaVerify(key.PublicKey(), "msg", sig + "x").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EcdsaVerify(key.PublicKey(), "msg", "").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EcdsaTest, WrongKeyRejected) {
  EcPrivateKey a = EcPrivateKey::Generate();
  EcPrivateKey b = EcPrivateKey::Generate();
  std::string sig = *a.Sign("msg");
  EXPECT_EQ(EcdsaVerify(b.PublicKey(), "msg", sig).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(EcdsaTest, MalformedPublicKey) {
  EcPrivateKey key = EcPrivateKey::Generate();
  std::string sig = *key.Sign("msg");
  std::string pub = key.PublicKey();
  EXPECT_EQ(EcdsaVerify(pub.substr(1), "msg", sig).code(),
            absl::StatusCode::kInvalidArgument);
  std::string off_curve = pub;
  off_curve[64] ^= 1;
  EXPECT_EQ(EcdsaVerify(off_curve, "msg", sig).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EcdsaTest, ScalarRange) {
  EXPECT_FALSE(EcPrivateKey::FromScalar(std::string(32, '\0')).ok());
  EXPECT_FALSE(EcPrivateKey::FromScalar(std::string(32, '\xff')).ok());
  EXPECT_FALSE(EcPrivateKey::FromScalar(std::string(31, '\x01')).ok());
  // n - 1 is valid, n is not.
  std::string n =
      Unhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
  EXPECT_FALSE(EcPrivateKey::FromScalar(n).ok());
  n[31] = '\x50';
  EXPECT_TRUE(EcPrivateKey::FromScalar(n).ok());
  EXPECT_FALSE(EcPrivateKey().valid());
  EXPECT_FALSE(EcPrivateKey().Sign("x").ok());
}

TEST(EcdsaTest, PemRoundTrips) {
  EcPrivateKey key = EcPrivateKey::Generate();
  std::string pem = key.ToPem();
  EXPECT_THAT(pem, ::testing::HasSubstr("-----BEGIN PRIVATE KEY-----"));
  auto back = EcPrivateKey::FromPem(pem);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->scalar(), key.scalar());

  std::string pub_pem = PublicKeyToPem(key.PublicKey());
  EXPECT_THAT(pub_pem, ::testing::HasSubstr("-----BEGIN PUBLIC KEY-----"));
  auto pub = PublicKeyFromPem(pub_pem);
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(*pub, key.PublicKey());

  EXPECT_EQ(EcPrivateKey::FromPem("garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PublicKeyFromPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END "
                             "PUBLIC KEY-----\n")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EcdsaTest, Sec1PemAccepted) {
  // `openssl ecparam -name prime256v1 -genkey -noout` output for the
  // RFC 6979 A.2.5 key.
  const char kSec1[] =
      "-----BEGIN EC PRIVATE KEY-----\n"
      "MHcCAQEEIMmvqdhFunUWa1whV2ex1pNOUMPbNuibEnuKYisSD2choAoGCCqGSM49\n"
      "AwEHoUQDQgAEYP7UuiVanTHJYet0xjVtaMBJuJI7Yfps5mliLmDyn7Z5A/4QCLi8\n"
      "maQa6elWKLxk8vGyDC1+n1F3o8KU1EYimQ==\n"
      "-----END EC PRIVATE KEY-----\n";
  auto key = EcPrivateKey::FromPem(kSec1);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(HexEncode(key->scalar()), kRfc6979Priv);
}

// ---- AES-256-GCM ----------------------------------------------------------

// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13-16.
TEST(AesGcmTest, McGrewViegaTestCase13And14) {
  std::string key(32, '\0'), iv(12, '\0');
  auto sealed = AesGcmSeal(key, iv, "", "");
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(HexEncode(*sealed), "530f8afbc74536b9a963b4f1c4cb738b");
  sealed = AesGcmSeal(key, iv, std::string(16, '\0'), "");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(HexEncode(*sealed),
            "cea7403d4d606b6e074ec5d3baf39d18"
            "d0d1c8a799996bf0265b98b5d48ab919");
  EXPECT_EQ(*AesGcmOpen(key, iv, *sealed, ""), std::string(16, '\0'));
}

constexpr absl::string_view kGcmKey =
    "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr absl::string_view kGcmIv = "cafebabefacedbaddecaf888";
constexpr absl::string_view kGcmPt =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
constexpr absl::string_view kGcmAad =
    "feedfacedeadbeeffeedfacedeadbeefabaddad2";
constexpr absl::string_view kGcmCt =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
constexpr absl::string_view kGcmTag = "76fc6ece0f4e1768cddf8853bb2d551b";

TEST(AesGcmTest, McGrewViegaTestCase16) {
  auto sealed =
      AesGcmSeal(Unhex(kGcmKey), Unhex(kGcmIv), Unhex(kGcmPt), Unhex(kGcmAad));
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(HexEncode(*sealed), std::string(kGcmCt) + std::string(kGcmTag));
  auto opened =
      AesGcmOpen(Unhex(kGcmKey), Unhex(kGcmIv), *sealed, Unhex(kGcmAad));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, Unhex(kGcmPt));
}

TEST(AesGcmTest, TamperingRejected) {
  std::string key = Unhex(kGcmKey), iv = Unhex(kGcmIv), aad = Unhex(kGcmAad);
  std::string sealed = *AesGcmSeal(key, iv, Unhex(kGcmPt), aad);
  std::string bad_ct = sealed;
  bad_ct[3] ^= 0x40;
  EXPECT_EQ(AesGcmOpen(key, iv, bad_ct, aad).status().code(),
            absl::StatusCode::kUnauthenticated);
  std::string bad_tag = sealed;
  bad_tag.back() ^= 0x01;
  EXPECT_EQ(AesGcmOpen(key, iv, bad_tag, aad).status().code(),
            absl::StatusCode::kUnauthenticated);
  std::string bad_aad = aad;
  bad_aad[0] ^= 0x01;
  EXPECT_EQ(AesGcmOpen(key, iv, sealed, bad_aad).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AesGcmOpen(key, iv, sealed, "").status().code(),
            absl::StatusCode::kUnauthenticated);
  std::string bad_iv = iv;
  bad_iv[11] ^= 0x01;
  EXPECT_EQ(AesGcmOpen(key, bad_iv, sealed, aad).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AesGcmOpen(key, iv, sealed.substr(0, 15), aad).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(AesGcmOpen(key, iv, sealed.substr(1), aad).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(AesGcmTest, BadSizes) {
  EXPECT_EQ(AesGcmSeal(std::string(16, 'k'), std::string(12, 'n'), "p", "")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AesGcmSeal(std::string(32, 'k'), std::string(16, 'n'), "p", "")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AesGcmTest, LargeRoundTrip) {
  std::string key = RandomBytes(32), iv = RandomBytes(12);
  std::string pt = RandomBytes(100000);
  auto sealed = AesGcmSeal(key, iv, pt, "aad");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->size(), pt.size() + 16);
  EXPECT_EQ(*AesGcmOpen(key, iv, *sealed, "aad"), pt);
}

// ---- AES-256-CTR ----------------------------------------------------------

// NIST SP 800-38A F.5.5 CTR-AES256.Encrypt.
constexpr absl::string_view kCtrKey =
    "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
constexpr absl::string_view kCtrIv = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
constexpr absl::string_view kCtrPt =
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
constexpr absl::string_view kCtrCt =
    "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
    "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6";

TEST(AesCtrTest, Sp80038aF55) {
  std::string buf = Unhex(kCtrPt);
  ASSERT_TRUE(
      AesCtrXor(Unhex(kCtrKey), Unhex(kCtrIv), 0, buf.data(), buf.size()).ok());
  EXPECT_EQ(HexEncode(buf), kCtrCt);
  // Decrypting is the same operation.
  ASSERT_TRUE(
      AesCtrXor(Unhex(kCtrKey), Unhex(kCtrIv), 0, buf.data(), buf.size()).ok());
  EXPECT_EQ(HexEncode(buf), kCtrPt);
}

TEST(AesCtrTest, UnalignedOffsetsMatchSlices) {
  std::string key = Unhex(kCtrKey), iv = Unhex(kCtrIv);
  std::string pt = Unhex(kCtrPt), ct = Unhex(kCtrCt);
  for (size_t off = 0; off < pt.size(); ++off) {
    for (size_t len :
         {size_t{1}, size_t{5}, size_t{16}, size_t{17}, pt.size() - off}) {
      if (off + len > pt.size()) continue;
      std::string buf = pt.substr(off, len);
      ASSERT_TRUE(AesCtrXor(key, iv, off, buf.data(), buf.size()).ok());
      EXPECT_EQ(HexEncode(buf), HexEncode(ct.substr(off, len)))
          << "offset " << off << " len " << len;
    }
  }
}

TEST(AesCtrTest, CounterCarriesAcross128Bits) {
  std::string key = RandomBytes(32);
  std::string all_ff(16, '\xff'), zero(16, '\0');
  // Block 1 of iv=ff..ff uses counter 00..00, i.e. block 0 of iv=0.
  std::string a(40, 'x'), b(40, 'x');
  ASSERT_TRUE(AesCtrXor(key, all_ff, 16 + 3, a.data(), a.size()).ok());
  ASSERT_TRUE(AesCtrXor(key, zero, 3, b.data(), b.size()).ok());
  EXPECT_EQ(a, b);
  // A carry out of the low 64 bits.
  std::string iv1 = Unhex("0000000000000000ffffffffffffffff");
  std::string iv2 = Unhex("00000000000000010000000000000000");
  std::string c(64, 'y'), d(64, 'y');
  ASSERT_TRUE(AesCtrXor(key, iv1, 16 * 1 + 7, c.data(), c.size()).ok());
  ASSERT_TRUE(AesCtrXor(key, iv2, 7, d.data(), d.size()).ok());
  EXPECT_EQ(c, d);
  // Large offsets.
  uint64_t big = (uint64_t{1} << 40) + 9;
  std::string e(100, 'z'), f(100, 'z');
  ASSERT_TRUE(AesCtrXor(key, zero, big, e.data(), e.size()).ok());
  std::string iv3 = Unhex("00000000000000000000001000000000");
  ASSERT_TRUE(AesCtrXor(key, iv3, 9, f.data(), f.size()).ok());
  EXPECT_EQ(e, f);
}

TEST(AesCtrTest, WholeBufferEqualsPieces) {
  std::string key = RandomBytes(32), iv = RandomBytes(16);
  std::string data = RandomBytes(65536 + 13);
  std::string whole = data;
  ASSERT_TRUE(AesCtrXor(key, iv, 1000, whole.data(), whole.size()).ok());
  std::string pieces = data;
  const size_t kSteps[] = {1, 15, 16, 33, 4096, 7, 5000};
  size_t pos = 0;
  for (size_t i = 0; pos < pieces.size(); ++i) {
    size_t len = std::min(kSteps[i % 7], pieces.size() - pos);
    ASSERT_TRUE(AesCtrXor(key, iv, 1000 + pos, &pieces[pos], len).ok());
    pos += len;
  }
  EXPECT_TRUE(whole == pieces);
  EXPECT_FALSE(whole == data);
}

TEST(AesCtrTest, BadSizes) {
  char buf[4] = {0};
  EXPECT_EQ(
      AesCtrXor(std::string(16, 'k'), std::string(16, 'i'), 0, buf, 4).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      AesCtrXor(std::string(32, 'k'), std::string(12, 'i'), 0, buf, 4).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      AesCtrXor(std::string(32, 'k'), std::string(16, 'i'), 0, buf, 0).ok());
}

// ---- X.509 ----------------------------------------------------------------

const absl::Time kT0 = absl::FromUnixSeconds(1767225600);  // 2026-01-01

struct Pki {
  EcPrivateKey root_key, ca_key, device_key;
  std::string root, ca, device;
};

// device -> tenant CA -> root, valid [start, start + 1 year).
Pki MakePki(absl::Time start = kT0) {
  Pki p;
  p.root_key = EcPrivateKey::Generate();
  p.ca_key = EcPrivateKey::Generate();
  p.device_key = EcPrivateKey::Generate();
  CertificateSpec root;
  root.common_name = "Sphere Root";
  root.organization = "Sphere";
  root.subject_public_key = p.root_key.PublicKey();
  root.not_before = start - absl::Hours(1);
  root.not_after = start + absl::Hours(24 * 365 * 10);
  root.usage = KeyUsage::kCa;
  root.path_len = 1;
  p.root = *IssueCertificate(root, p.root_key, "");

  CertificateSpec ca;
  ca.common_name = "Tenant CA t-1";
  ca.subject_public_key = p.ca_key.PublicKey();
  ca.not_before = start - absl::Hours(1);
  ca.not_after = start + absl::Hours(24 * 365 * 5);
  ca.usage = KeyUsage::kCa;
  ca.path_len = 0;
  p.ca = *IssueCertificate(ca, p.root_key, p.root);

  CertificateSpec dev;
  dev.common_name = "device-123";
  dev.subject_public_key = p.device_key.PublicKey();
  dev.not_before = start;
  dev.not_after = start + absl::Hours(24 * 365);
  dev.usage = KeyUsage::kClientAuth;
  dev.claims.device_id = "123";
  dev.claims.tenant_id = "t-1";
  dev.claims.product_id = "p-9";
  dev.claims.device_group_id = "g-4";
  dev.claims.scope = "full";
  p.device = *IssueCertificate(dev, p.ca_key, p.ca);
  return p;
}

TEST(X509Test, IssueAndParse) {
  EcPrivateKey key = EcPrivateKey::Generate();
  CertificateSpec spec;
  spec.common_name = "Sphere Root";
  spec.organization = "Sphere";
  spec.subject_public_key = key.PublicKey();
  spec.serial = 0x1234;
  spec.not_before = kT0;
  spec.not_after = kT0 + absl::Hours(48);
  spec.usage = KeyUsage::kCa;
  auto pem = IssueCertificate(spec, key, "");
  ASSERT_TRUE(pem.ok()) << pem.status();
  auto parsed = ParseCertificate(*pem);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->common_name, "Sphere Root");
  EXPECT_EQ(parsed->organization, "Sphere");
  EXPECT_EQ(parsed->issuer_common_name, "Sphere Root");
  EXPECT_EQ(parsed->subject_line, "CN=Sphere Root, O=Sphere");
  EXPECT_EQ(parsed->issuer_line, "CN=Sphere Root, O=Sphere");
  EXPECT_EQ(parsed->serial_hex, "1234");
  EXPECT_EQ(parsed->public_key, key.PublicKey());
  EXPECT_EQ(parsed->not_before, kT0);
  EXPECT_EQ(parsed->not_after, kT0 + absl::Hours(48));
  EXPECT_TRUE(parsed->is_ca);
  EXPECT_FALSE(parsed->server_auth);
  EXPECT_FALSE(parsed->client_auth);
  EXPECT_TRUE(parsed->claims.empty());
  EXPECT_FALSE(parsed->der.empty());
  // Self-signed root verifies against itself.
  EXPECT_TRUE(VerifyChain(*pem, "", *pem, kT0 + absl::Hours(1), false).ok());
}

TEST(X509Test, RandomSerialAndServerSans) {
  EcPrivateKey key = EcPrivateKey::Generate();
  CertificateSpec spec;
  spec.common_name = "localhost";
  spec.subject_public_key = key.PublicKey();
  spec.not_before = kT0;
  spec.not_after = kT0 + absl::Hours(1);
  spec.usage = KeyUsage::kServerAndClientAuth;
  spec.dns_sans = {"localhost", "sphere.test"};
  spec.ip_sans = {"127.0.0.1", "::1"};
  auto a = ParseCertificate(*IssueCertificate(spec, key, ""));
  auto b = ParseCertificate(*IssueCertificate(spec, key, ""));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->serial_hex, b->serial_hex);
  EXPECT_FALSE(a->is_ca);
  EXPECT_TRUE(a->server_auth);
  EXPECT_TRUE(a->client_auth);
  EXPECT_THAT(a->dns_sans, ::testing::ElementsAre("localhost", "sphere.test"));
  EXPECT_TRUE(a->uri_sans.empty());

  spec.ip_sans = {"not-an-ip"};
  EXPECT_EQ(IssueCertificate(spec, key, "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509Test, ClaimsRoundTrip) {
  Pki p = MakePki();
  auto dev = ParseCertificate(p.device);
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ(dev->claims.device_id, "123");
  EXPECT_EQ(dev->claims.tenant_id, "t-1");
  EXPECT_EQ(dev->claims.product_id, "p-9");
  EXPECT_EQ(dev->claims.device_group_id, "g-4");
  EXPECT_EQ(dev->claims.scope, "full");
  EXPECT_THAT(dev->uri_sans, ::testing::Contains("urn:sphere:device:123"));
  EXPECT_EQ(dev->issuer_common_name, "Tenant CA t-1");
  EXPECT_TRUE(dev->client_auth);
  EXPECT_FALSE(dev->server_auth);
  EXPECT_FALSE(dev->is_ca);
  auto ca = ParseCertificate(p.ca);
  ASSERT_TRUE(ca.ok());
  EXPECT_TRUE(ca->is_ca);
  EXPECT_EQ(ca->issuer_common_name, "Sphere Root");
}

TEST(X509Test, ChainVerifies) {
  Pki p = MakePki();
  EXPECT_TRUE(
      VerifyChain(p.device, p.ca, p.root, kT0 + absl::Hours(1), true).ok());
  // The intermediate may also arrive concatenated with the leaf.
  EXPECT_TRUE(VerifyChain(p.device, p.device + p.ca, p.root,
                          kT0 + absl::Hours(1), false)
                  .ok());
  // Several roots.
  Pki other = MakePki();
  EXPECT_TRUE(VerifyChain(p.device, p.ca, other.root + p.root,
                          kT0 + absl::Hours(1), true)
                  .ok());
  EXPECT_EQ(SplitPemChain(p.device + p.ca + p.root).size(), 3u);
  EXPECT_EQ(SplitPemChain(p.device + p.ca + p.root)[1], p.ca);
}

TEST(X509Test, ExpiredAndNotYetValid) {
  Pki p = MakePki();
  EXPECT_EQ(
      VerifyChain(p.device, p.ca, p.root, kT0 + absl::Hours(24 * 366), true)
          .code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      VerifyChain(p.device, p.ca, p.root, kT0 - absl::Minutes(1), true).code(),
      absl::StatusCode::kFailedPrecondition);
  // The `now` argument, not the wall clock, decides: a chain valid today is
  // rejected at a past instant and vice versa.
  Pki future = MakePki(absl::Now() + absl::Hours(24 * 365 * 3));
  EXPECT_EQ(
      VerifyChain(future.device, future.ca, future.root, absl::Now(), true)
          .code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(VerifyChain(future.device, future.ca, future.root,
                          absl::Now() + absl::Hours(24 * 365 * 3 + 1), true)
                  .ok());
}

TEST(X509Test, WrongIssuerRejected) {
  Pki p = MakePki();
  Pki other = MakePki();
  absl::Time t = kT0 + absl::Hours(1);
  EXPECT_EQ(VerifyChain(p.device, p.ca, other.root, t, true).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(VerifyChain(p.device, other.ca, p.root, t, true).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(VerifyChain(p.device, "", p.root, t, true).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(X509Test, IssuerKeyMustMatch) {
  Pki p = MakePki();
  CertificateSpec spec;
  spec.common_name = "x";
  spec.subject_public_key = EcPrivateKey::Generate().PublicKey();
  spec.not_before = kT0;
  spec.not_after = kT0 + absl::Hours(1);
  EXPECT_EQ(IssueCertificate(spec, p.root_key, p.ca).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Self-signed requires the spec key to be the issuer's.
  EXPECT_EQ(IssueCertificate(spec, p.root_key, "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(X509Test, MissingClientAuthEku) {
  Pki p = MakePki();
  CertificateSpec spec;
  spec.common_name = "server";
  spec.subject_public_key = EcPrivateKey::Generate().PublicKey();
  spec.not_before = kT0;
  spec.not_after = kT0 + absl::Hours(24);
  spec.usage = KeyUsage::kServerAuth;
  std::string server = *IssueCertificate(spec, p.ca_key, p.ca);
  absl::Time t = kT0 + absl::Hours(1);
  EXPECT_EQ(VerifyChain(server, p.ca, p.root, t, true).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(VerifyChain(server, p.ca, p.root, t, false).ok());
}

TEST(X509Test, LeafSignedByNonCaRejected) {
  Pki p = MakePki();
  // The device (a non-CA) signs another certificate.
  CertificateSpec spec;
  spec.common_name = "rogue";
  spec.subject_public_key = EcPrivateKey::Generate().PublicKey();
  spec.not_before = kT0;
  spec.not_after = kT0 + absl::Hours(24);
  auto rogue = IssueCertificate(spec, p.device_key, p.device);
  ASSERT_TRUE(rogue.ok()) << rogue.status();
  EXPECT_EQ(
      VerifyChain(*rogue, p.device + p.ca, p.root, kT0 + absl::Hours(1), true)
          .code(),
      absl::StatusCode::kUnauthenticated);
}

TEST(X509Test, PathLengthEnforced) {
  Pki p = MakePki();
  // Tenant CA has pathlen 0, so a CA below it may not issue.
  EcPrivateKey sub_key = EcPrivateKey::Generate();
  CertificateSpec sub;
  sub.common_name = "sub CA";
  sub.subject_public_key = sub_key.PublicKey();
  sub.not_before = kT0 - absl::Hours(1);
  sub.not_after = kT0 + absl::Hours(24);
  sub.usage = KeyUsage::kCa;
  std::string sub_pem = *IssueCertificate(sub, p.ca_key, p.ca);
  CertificateSpec leaf;
  leaf.common_name = "leaf";
  leaf.subject_public_key = EcPrivateKey::Generate().PublicKey();
  leaf.not_before = kT0 - absl::Hours(1);
  leaf.not_after = kT0 + absl::Hours(24);
  std::string leaf_pem = *IssueCertificate(leaf, sub_key, sub_pem);
  EXPECT_EQ(VerifyChain(leaf_pem, sub_pem + p.ca, p.root, kT0, true).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(X509Test, TamperedCertificateRejected) {
  Pki p = MakePki();
  // Re-sign the device certificate's contents with the wrong CA key by
  // issuing a look-alike: same issuer name, different key.
  EcPrivateKey fake_ca_key = EcPrivateKey::Generate();
  CertificateSpec fake_ca;
  fake_ca.common_name = "Tenant CA t-1";  // same name as the real CA
  fake_ca.subject_public_key = fake_ca_key.PublicKey();
  fake_ca.not_before = kT0 - absl::Hours(1);
  fake_ca.not_after = kT0 + absl::Hours(24);
  fake_ca.usage = KeyUsage::kCa;
  std::string fake_ca_pem = *IssueCertificate(fake_ca, fake_ca_key, "");
  CertificateSpec dev;
  dev.common_name = "device-666";
  dev.subject_public_key = EcPrivateKey::Generate().PublicKey();
  dev.not_before = kT0 - absl::Hours(1);
  dev.not_after = kT0 + absl::Hours(24);
  std::string forged = *IssueCertificate(dev, fake_ca_key, fake_ca_pem);
  EXPECT_EQ(VerifyChain(forged, p.ca, p.root, kT0, true).code(),
            absl::StatusCode::kUnauthenticated);
}

// VerifyChain keeps the roots and intermediates it parsed (keyed by their
// bytes): a second call with the same issuers must still check the leaf's
// signature, the validity windows and the roots it is given.
TEST(X509Test, Attack_RememberedIssuersStillCheckEveryCall) {
  Pki p = MakePki();
  const absl::Time t = kT0 + absl::Hours(1);
  ASSERT_TRUE(VerifyChain(p.device, p.ca, p.root, t, true).ok());
  // A look-alike leaf: same issuer name, signed by another key.
  EcPrivateKey fake_ca_key = EcPrivateKey::Generate();
  CertificateSpec fake_ca;
  fake_ca.common_name = "Tenant CA t-1";
  fake_ca.subject_public_key = fake_ca_key.PublicKey();
  fake_ca.not_before = kT0 - absl::Hours(1);
  fake_ca.not_after = kT0 + absl::Hours(24);
  fake_ca.usage = KeyUsage::kCa;
  const std::string fake_ca_pem = *IssueCertificate(fake_ca, fake_ca_key, "");
  CertificateSpec dev;
  dev.common_name = "device-666";
  dev.subject_public_key = EcPrivateKey::Generate().PublicKey();
  dev.not_before = kT0 - absl::Hours(1);
  dev.not_after = kT0 + absl::Hours(24);
  const std::string forged = *IssueCertificate(dev, fake_ca_key, fake_ca_pem);
  EXPECT_EQ(VerifyChain(forged, p.ca, p.root, t, true).code(),
            absl::StatusCode::kUnauthenticated);
  // Time is checked on every call, not remembered.
  EXPECT_EQ(
      VerifyChain(p.device, p.ca, p.root, kT0 + absl::Hours(24 * 366), true)
          .code(),
      absl::StatusCode::kFailedPrecondition);
  // Another root set does not inherit the first one's trust.
  Pki other = MakePki();
  EXPECT_EQ(VerifyChain(p.device, p.ca, other.root, t, true).code(),
            absl::StatusCode::kUnauthenticated);
  // More issuers than are kept: the oldest are dropped and parsed again.
  for (int i = 0; i < 40; ++i) {
    Pki q = MakePki();
    ASSERT_TRUE(VerifyChain(q.device, q.ca, q.root, t, true).ok()) << i;
  }
  EXPECT_TRUE(VerifyChain(p.device, p.ca, p.root, t, true).ok());
  EXPECT_EQ(VerifyChain(forged, p.ca, p.root, t, true).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(X509Test, MalformedPem) {
  Pki p = MakePki();
  const char kBad[] =
      "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
  EXPECT_EQ(ParseCertificate("garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCertificate(kBad).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Time t = kT0 + absl::Hours(1);
  EXPECT_EQ(VerifyChain("garbage", p.ca, p.root, t, true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyChain(p.device, kBad, p.root, t, true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyChain(p.device, p.ca, kBad, t, true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyChain(p.device, p.ca, "", t, true).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(SplitPemChain("no pem here").empty());
}

// PEM <-> DER without depending on the backend (for tampering tests).
std::string PemBodyToDer(absl::string_view pem) {
  std::string b64;
  for (absl::string_view line : absl::StrSplit(pem, '\n')) {
    if (line.empty() || absl::StartsWith(line, "-----")) continue;
    absl::StrAppend(&b64, line);
  }
  std::string der;
  EXPECT_TRUE(absl::Base64Unescape(b64, &der));
  return der;
}

std::string DerToPem(absl::string_view der, absl::string_view label) {
  std::string b64 = absl::Base64Escape(der);
  std::string out = absl::StrCat("-----BEGIN ", label, "-----\n");
  for (size_t i = 0; i < b64.size(); i += 64) {
    absl::StrAppend(&out, b64.substr(i, 64), "\n");
  }
  absl::StrAppend(&out, "-----END ", label, "-----\n");
  return out;
}

// ---- CertificateIssuer ------------------------------------------------------

CertificateSpec DeviceSpec(const EcPrivateKey& key) {
  CertificateSpec dev;
  dev.common_name = "device-456";
  dev.organization = "Tenant";
  dev.subject_public_key = key.PublicKey();
  dev.not_before = kT0;
  dev.not_after = kT0 + absl::Hours(24);
  dev.usage = KeyUsage::kClientAuth;
  dev.claims.device_id = "456";
  dev.claims.tenant_id = "t-1";
  dev.claims.product_id = "p-9";
  dev.claims.device_group_id = "g-4";
  dev.claims.scope = "update-only";
  return dev;
}

// TbsOf (below) returns the TBSCertificate element of a DER certificate.
std::string TbsOf(const std::string& der);

void ExpectSameContents(const ParsedCertificate& a,
                        const ParsedCertificate& b) {
  EXPECT_EQ(a.subject_line, b.subject_line);
  EXPECT_EQ(a.issuer_line, b.issuer_line);
  EXPECT_EQ(a.serial_hex, b.serial_hex);
  EXPECT_EQ(a.public_key, b.public_key);
  EXPECT_EQ(a.not_before, b.not_before);
  EXPECT_EQ(a.not_after, b.not_after);
  EXPECT_EQ(a.is_ca, b.is_ca);
  EXPECT_EQ(a.server_auth, b.server_auth);
  EXPECT_EQ(a.client_auth, b.client_auth);
  EXPECT_EQ(a.dns_sans, b.dns_sans);
  EXPECT_EQ(a.uri_sans, b.uri_sans);
  // Only the ECDSA signature (random k) may differ, in content and in length
  // (each of r and s is 31 to 33 bytes in DER, or shorter with a small
  // chance), so the signed part must be the same length.
  EXPECT_EQ(TbsOf(a.der).size(), TbsOf(b.der).size());
  EXPECT_FALSE(TbsOf(a.der).empty());
}

TEST(CertificateIssuerTest, SameCertificateAsIssueCertificate) {
  Pki p = MakePki();
  auto issuer = CertificateIssuer::Create(p.ca_key, p.ca);
  ASSERT_TRUE(issuer.ok()) << issuer.status();
  EXPECT_FALSE((*issuer)->self_signed());
  EXPECT_EQ((*issuer)->public_key(), p.ca_key.PublicKey());
  EcPrivateKey key = EcPrivateKey::Generate();
  CertificateSpec spec = DeviceSpec(key);
  spec.serial = 0x0102030405;
  auto fast = (*issuer)->Issue(spec);
  auto slow = IssueCertificate(spec, p.ca_key, p.ca);
  ASSERT_TRUE(fast.ok()) << fast.status();
  ASSERT_TRUE(slow.ok()) << slow.status();
  auto a = ParseCertificate(*fast);
  auto b = ParseCertificate(*slow);
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectSameContents(*a, *b);
  EXPECT_EQ(a->claims.scope, "update-only");
  EXPECT_EQ(a->serial_hex, "0102030405");
  EXPECT_TRUE(
      VerifyChain(*fast, p.ca, p.root, kT0 + absl::Hours(1), true).ok());
}

// TbsOf returns the TBSCertificate element (tag, length and content) of a
// DER certificate: the first element inside the outer SEQUENCE.
std::string TbsOf(const std::string& der) {
  auto header = [&](size_t at, size_t* content_len) -> size_t {
    if (at + 2 > der.size() || static_cast<uint8_t>(der[at]) != 0x30) {
      return 0;
    }
    uint8_t l = static_cast<uint8_t>(der[at + 1]);
    if (l < 0x80) {
      *content_len = l;
      return 2;
    }
    size_t n = l & 0x7f, len = 0;
    if (n == 0 || n > 3 || at + 2 + n > der.size()) return 0;
    for (size_t i = 0; i < n; ++i) {
      len = (len << 8) | static_cast<uint8_t>(der[at + 2 + i]);
    }
    *content_len = len;
    return 2 + n;
  };
  size_t outer_len = 0, tbs_len = 0;
  size_t outer = header(0, &outer_len);
  if (outer == 0) return "";
  size_t inner = header(outer, &tbs_len);
  if (inner == 0 || outer + inner + tbs_len > der.size()) return "";
  return der.substr(outer, inner + tbs_len);
}

// CertificateIssuer encodes leaf certificates directly (no X509 object);
// IssueCertificate keeps OpenSSL's general encoder. Both must write the same
// TBSCertificate, byte for byte, for every leaf shape the platform issues,
// and the direct one's signature must verify up the chain.
TEST(CertificateIssuerTest, DirectEncoderWritesTheSameTbsAsTheX509Encoder) {
  Pki p = MakePki();
  auto issuer = CertificateIssuer::Create(p.ca_key, p.ca);
  ASSERT_TRUE(issuer.ok()) << issuer.status();
  std::vector<CertificateSpec> specs;
  CertificateSpec device = DeviceSpec(EcPrivateKey::Generate());
  device.common_name = std::string(64, 'a');  // a real device id's length
  device.claims.device_id = device.common_name;
  device.claims.epoch = "7";
  specs.push_back(device);
  CertificateSpec full = device;
  full.claims.scope = "full";
  full.claims.product_id.clear();  // absent claims are left out
  specs.push_back(full);
  CertificateSpec no_org = DeviceSpec(EcPrivateKey::Generate());
  no_org.organization.clear();
  specs.push_back(no_org);
  CertificateSpec no_claims = DeviceSpec(EcPrivateKey::Generate());
  no_claims.claims = DeviceClaims();  // no SAN extension at all
  specs.push_back(no_claims);
  CertificateSpec server = DeviceSpec(EcPrivateKey::Generate());
  server.usage = KeyUsage::kServerAuth;
  server.dns_sans = {"localhost", "shard-0.sphere.test"};
  specs.push_back(server);
  CertificateSpec both = server;
  both.usage = KeyUsage::kServerAndClientAuth;
  specs.push_back(both);
  CertificateSpec late = DeviceSpec(EcPrivateKey::Generate());
  late.not_before = absl::FromUnixSeconds(2524608000 - 1);  // 2049-12-31
  late.not_after =
      absl::FromUnixSeconds(2524608000 + 86400);  // 2050: GeneralizedTime
  specs.push_back(late);
  CertificateSpec long_claims = DeviceSpec(EcPrivateKey::Generate());
  long_claims.claims.tenant_id = std::string(300, 't');  // 2-byte DER lengths
  specs.push_back(long_claims);
  // Serials: smallest, high bit set in the top byte (needs a 0x00 pad), the
  // largest 63-bit one.
  const uint64_t serials[] = {1, 0x80, 0xff00, 0x0102030405,
                              0x7fffffffffffffffULL};
  for (size_t i = 0; i < specs.size(); ++i) {
    for (uint64_t serial : serials) {
      CertificateSpec spec = specs[i];
      spec.serial = serial;
      SCOPED_TRACE(absl::StrCat("spec ", i, " serial ", serial));
      auto direct = (*issuer)->IssueWithSerial(spec);
      auto reference = IssueCertificate(spec, p.ca_key, p.ca);
      ASSERT_TRUE(direct.ok()) << direct.status();
      ASSERT_TRUE(reference.ok()) << reference.status();
      auto a = ParseCertificate(direct->pem);
      auto b = ParseCertificate(*reference);
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      const std::string tbs = TbsOf(a->der);
      ASSERT_FALSE(tbs.empty());
      EXPECT_EQ(crypto::HexEncode(tbs), crypto::HexEncode(TbsOf(b->der)));
      ExpectSameContents(*a, *b);
      EXPECT_EQ(a->serial_hex, SerialToHex(serial));
      EXPECT_EQ(direct->serial_hex, a->serial_hex);
      if (spec.not_before != kT0) continue;  // beyond the test CA's validity
      if (spec.usage != KeyUsage::kServerAuth) {
        EXPECT_TRUE(
            VerifyChain(direct->pem, p.ca, p.root, kT0 + absl::Hours(1), true)
                .ok());
      }
      EXPECT_TRUE(
          VerifyChain(direct->pem, p.ca, p.root, kT0 + absl::Hours(1), false)
              .ok());
    }
  }
}

// What the direct encoder does not cover goes through the general encoder,
// which refuses it as before: names beyond the X.520 bound of 64 characters.
TEST(CertificateIssuerTest, OutOfShapeNamesStillRefused) {
  Pki p = MakePki();
  auto issuer = CertificateIssuer::Create(p.ca_key, p.ca);
  ASSERT_TRUE(issuer.ok());
  CertificateSpec spec = DeviceSpec(EcPrivateKey::Generate());
  spec.common_name = std::string(65, 'a');
  EXPECT_EQ((*issuer)->Issue(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec = DeviceSpec(EcPrivateKey::Generate());
  spec.organization = std::string(65, 'o');
  EXPECT_EQ((*issuer)->Issue(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Non-ASCII UTF-8 is encoded by the general encoder, and parses back.
  spec = DeviceSpec(EcPrivateKey::Generate());
  spec.organization = "Contoso \xc3\x85s";
  auto pem = (*issuer)->Issue(spec);
  ASSERT_TRUE(pem.ok()) << pem.status();
  auto parsed = ParseCertificate(*pem);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->organization, spec.organization);
}

// A claim value is written into the DER as one URI; bytes that look like
// DER or like another claim stay inside it: the certificate still parses,
// carries the value verbatim, and the scope stays what the issuer said.
TEST(CertificateIssuerTest, Attack_ClaimBytesCannotForgeAnotherClaim) {
  Pki p = MakePki();
  auto issuer = CertificateIssuer::Create(p.ca_key, p.ca);
  ASSERT_TRUE(issuer.ok());
  for (const std::string& forged :
       {std::string("t-1,urn:sphere:scope:full"),
        std::string("t-1\x86\x15urn:sphere:scope:full", 26),
        std::string("t-1\x30\x82\xff\xff", 7)}) {
    CertificateSpec spec = DeviceSpec(EcPrivateKey::Generate());
    spec.claims.tenant_id = forged;
    auto pem = (*issuer)->Issue(spec);
    if (!pem.ok()) continue;  // refused outright is fine too
    auto parsed = ParseCertificate(*pem);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->claims.scope, "update-only");
    EXPECT_EQ(parsed->claims.device_id, "456");
    EXPECT_EQ(parsed->uri_sans.size(), 5u);
    EXPECT_TRUE(
        VerifyChain(*pem, p.ca, p.root, kT0 + absl::Hours(1), true).ok());
  }
}

TEST(CertificateIssuerTest, IssueWithSerialReportsTheSerial) {
  Pki p = MakePki();
  auto issuer = CertificateIssuer::Create(p.ca_key, p.ca);
  ASSERT_TRUE(issuer.ok()) << issuer.status();
  CertificateSpec spec = DeviceSpec(EcPrivateKey::Generate());
  std::vector<std::string> serials;
  for (int i = 0; i < 20; ++i) {
    auto issued = (*issuer)->IssueWithSerial(spec);
    ASSERT_TRUE(issued.ok()) << issued.status();
    EXPECT_NE(issued->serial, 0u);
    EXPECT_LE(issued->serial, 0x7fffffffffffffffULL);
    EXPECT_EQ(issued->serial_hex, SerialToHex(issued->serial));
    auto parsed = ParseCertificate(issued->pem);
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->serial_hex, issued->serial_hex);
    serials.push_back(issued->serial_hex);
  }
  std::sort(serials.begin(), serials.end());
  EXPECT_EQ(std::unique(serials.begin(), serials.end()), serials.end());

  spec.serial = 0x42;
  auto fixed = (*issuer)->IssueWithSerial(spec);
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->serial, 0x42u);
  EXPECT_EQ(fixed->serial_hex, "42");
}

TEST(CertificateIssuerTest, SerialToHexMatchesParsedForm) {
  EXPECT_EQ(SerialToHex(0), "00");
  EXPECT_EQ(SerialToHex(0x1), "01");
  EXPECT_EQ(SerialToHex(0xff), "ff");
  EXPECT_EQ(SerialToHex(0x100), "0100");
  EXPECT_EQ(SerialToHex(0x1234), "1234");
  EXPECT_EQ(SerialToHex(0x7fffffffffffffffULL), "7fffffffffffffff");
  EcPrivateKey key = EcPrivateKey::Generate();
  auto issuer = CertificateIssuer::Create(key, "");
  ASSERT_TRUE(issuer.ok());
  CertificateSpec spec;
  spec.common_name = "r";
  spec.subject_public_key = key.PublicKey();
  spec.not_before = kT0;
  spec.not_after = kT0 + absl::Hours(1);
  spec.usage = KeyUsage::kCa;
  for (uint64_t serial :
       {uint64_t{0x80}, uint64_t{0x100}, uint64_t{0xffff},
        uint64_t{0x00ff00ff00ff00ffULL}, uint64_t{0x7fffffffffffffffULL}}) {
    spec.serial = serial;
    auto issued = (*issuer)->IssueWithSerial(spec);
    ASSERT_TRUE(issued.ok()) << issued.status();
    EXPECT_EQ(ParseCertificate(issued->pem)->serial_hex, SerialToHex(serial));
  }
}

TEST(CertificateIssuerTest, SelfSigned) {
  EcPrivateKey key = EcPrivateKey::Generate();
  auto issuer = CertificateIssuer::Create(key, "");
  ASSERT_TRUE(issuer.ok()) << issuer.status();
  EXPECT_TRUE((*issuer)->self_signed());
  CertificateSpec spec;
  spec.common_name = "Root";
  spec.organization = "Sphere";
  spec.subject_public_key = key.PublicKey();
  spec.not_before = kT0;
  spec.not_after = kT0 + absl::Hours(48);
  spec.usage = KeyUsage::kCa;
  auto pem = (*issuer)->Issue(spec);
  ASSERT_TRUE(pem.ok()) << pem.status();
  auto parsed = ParseCertificate(*pem);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->issuer_line, "CN=Root, O=Sphere");
  EXPECT_TRUE(VerifyChain(*pem, "", *pem, kT0 + absl::Hours(1), false).ok());
  spec.subject_public_key = EcPrivateKey::Generate().PublicKey();
  EXPECT_EQ((*issuer)->Issue(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CertificateIssuerTest, CreateRejectsBadIssuers) {
  Pki p = MakePki();
  EXPECT_EQ(CertificateIssuer::Create(EcPrivateKey(), p.ca).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Key does not match the certificate.
  EXPECT_EQ(CertificateIssuer::Create(p.root_key, p.ca).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CertificateIssuer::Create(p.ca_key, "not a pem").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CertificateIssuerTest, IssueRejectsBadSpecs) {
  Pki p = MakePki();
  auto issuer = CertificateIssuer::Create(p.ca_key, p.ca);
  ASSERT_TRUE(issuer.ok());
  CertificateSpec spec = DeviceSpec(EcPrivateKey::Generate());
  spec.not_after = spec.not_before;
  EXPECT_EQ((*issuer)->Issue(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec = DeviceSpec(EcPrivateKey::Generate());
  spec.subject_public_key[10] ^= 1;  // off the curve
  EXPECT_EQ((*issuer)->Issue(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec = DeviceSpec(EcPrivateKey::Generate());
  spec.ip_sans = {"not-an-ip"};
  EXPECT_EQ((*issuer)->Issue(spec).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CertificateIssuerTest, ConcurrentIssuance) {
  Pki p = MakePki();
  auto created = CertificateIssuer::Create(p.ca_key, p.ca);
  ASSERT_TRUE(created.ok());
  const CertificateIssuer& issuer = **created;
  constexpr int kThreads = 4, kPerThread = 25;
  std::vector<std::vector<std::string>> pems(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto pem = issuer.Issue(DeviceSpec(EcPrivateKey::Generate()));
        if (pem.ok()) pems[t].push_back(*pem);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& v : pems) {
    ASSERT_EQ(v.size(), static_cast<size_t>(kPerThread));
    for (const auto& pem : v) {
      EXPECT_TRUE(
          VerifyChain(pem, p.ca, p.root, kT0 + absl::Hours(1), true).ok());
    }
  }
}

TEST(CsrTest, RoundTrip) {
  EcPrivateKey key = EcPrivateKey::Generate();
  auto csr = CreateCsr(key, "device-123");
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_THAT(*csr, ::testing::HasSubstr("CERTIFICATE REQUEST"));
  auto parsed = ParseCsr(*csr);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->common_name, "device-123");
  EXPECT_EQ(parsed->public_key, key.PublicKey());
  // Our DER round trip helper is faithful.
  std::string der = PemBodyToDer(*csr);
  EXPECT_TRUE(ParseCsr(DerToPem(der, "CERTIFICATE REQUEST")).ok());
}

TEST(CsrTest, TamperedRejected) {
  EcPrivateKey key = EcPrivateKey::Generate();
  std::string der = PemBodyToDer(*CreateCsr(key, "device-123"));
  size_t pos = der.find("device-123");
  ASSERT_NE(pos, std::string::npos);
  der[pos + 9] = '4';  // CN now "device-124"; the signature no longer matches
  EXPECT_EQ(ParseCsr(DerToPem(der, "CERTIFICATE REQUEST")).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ParseCsr("garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCsr(EcPrivateKey(), "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Interop with the openssl command line (skipped when absent) ----------

bool HaveOpenssl() {
  return std::system("openssl version >/dev/null 2>&1") == 0;
}

std::string WriteTemp(const std::string& name, const std::string& data) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = absl::StrCat(dir ? dir : "/tmp", "/", name);
  std::ofstream(path) << data;
  return path;
}

int Shell(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str());
}

TEST(OpensslInteropTest, CommandLineAcceptsChainAndKeys) {
  if (!HaveOpenssl()) GTEST_SKIP() << "openssl binary not installed";
  // The CLI checks validity against the wall clock.
  Pki p = MakePki(absl::Now() - absl::Minutes(5));
  std::string root = WriteTemp("root.pem", p.root);
  std::string chain = WriteTemp("chain.pem", p.device + p.ca);
  std::string device = WriteTemp("device.pem", p.device);
  EXPECT_EQ(Shell("openssl verify -CAfile " + root + " -untrusted " + chain +
                  " " + chain),
            0);
  EXPECT_EQ(Shell("openssl verify -purpose sslclient -CAfile " + root +
                  " -untrusted " + chain + " " + device),
            0);
  // The wrong root is rejected.
  Pki other = MakePki(absl::Now() - absl::Minutes(5));
  std::string other_root = WriteTemp("other_root.pem", other.root);
  EXPECT_NE(Shell("openssl verify -CAfile " + other_root + " -untrusted " +
                  chain + " " + device),
            0);

  // A TLS server certificate as gRPC uses it.
  EcPrivateKey server_key = EcPrivateKey::Generate();
  CertificateSpec spec;
  spec.common_name = "localhost";
  spec.subject_public_key = server_key.PublicKey();
  spec.not_before = absl::Now() - absl::Minutes(5);
  spec.not_after = absl::Now() + absl::Hours(24);
  spec.usage = KeyUsage::kServerAuth;
  spec.dns_sans = {"localhost"};
  spec.ip_sans = {"127.0.0.1"};
  std::string server =
      WriteTemp("server.pem", *IssueCertificate(spec, p.ca_key, p.ca));
  std::string ca = WriteTemp("ca.pem", p.ca);
  EXPECT_EQ(
      Shell("openssl verify -purpose sslserver -verify_hostname localhost "
            "-CAfile " +
            root + " -untrusted " + ca + " " + server),
      0);
  EXPECT_EQ(Shell("openssl verify -purpose sslserver -verify_ip 127.0.0.1 "
                  "-CAfile " +
                  root + " -untrusted " + ca + " " + server),
            0);
  EXPECT_NE(Shell("openssl verify -purpose sslserver -verify_ip 10.0.0.1 "
                  "-CAfile " +
                  root + " -untrusted " + ca + " " + server),
            0);

  // Private keys: PKCS#8 PEM readable by openssl, matching the certificate.
  std::string key = WriteTemp("server.key", server_key.ToPem());
  EXPECT_EQ(Shell("openssl pkey -check -noout -in " + key), 0);
  EXPECT_EQ(Shell("test \"$(openssl pkey -in " + key +
                  " -pubout)\" = \"$(openssl x509 -noout -pubkey -in " +
                  server + ")\""),
            0);
  std::string pub =
      WriteTemp("pub.pem", PublicKeyToPem(server_key.PublicKey()));
  EXPECT_EQ(Shell("openssl pkey -pubin -noout -in " + pub), 0);

  // A CSR openssl can verify, and a key openssl made that we can load.
  std::string csr = WriteTemp("req.csr", *CreateCsr(server_key, "device-1"));
  EXPECT_EQ(Shell("openssl req -verify -noout -in " + csr), 0);
  std::string gen = absl::StrCat(
      std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp",
      "/gen.pem");
  ASSERT_EQ(
      Shell("openssl ecparam -name prime256v1 -genkey -noout -out " + gen), 0);
  std::ifstream in(gen);
  std::string gen_pem((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
  EXPECT_TRUE(EcPrivateKey::FromPem(gen_pem).ok());
}

}  // namespace
}  // namespace sphere::crypto
