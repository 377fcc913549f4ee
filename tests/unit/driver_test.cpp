// The driver check's parsing and comparison.
#include <gtest/gtest.h>

#include "core/driver.hpp"

namespace berth {
namespace {

TEST(Driver, ReadsTheHostsKernelModuleVersion) {
  EXPECT_EQ(host_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat "
                                "Aug 19 01:15:15 UTC 2023\nGCC version: 12\n"),
            "535.104.05");
  EXPECT_EQ(
      host_driver_version(
          "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build"),
      "550.54.14");
  EXPECT_FALSE(host_driver_version("garbage"));
  EXPECT_FALSE(host_driver_version(""));
}

TEST(Driver, ReadsTheVersionFromTheLinksNameOnly) {
  EXPECT_EQ(libcuda_version("libcuda.so.535.104.05"), "535.104.05");
  EXPECT_EQ(libcuda_version("/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05"), "535.104.05");
  EXPECT_FALSE(libcuda_version("libcuda.so.1"));  // a loop to itself
  EXPECT_FALSE(libcuda_version("libcuda.so"));
  EXPECT_FALSE(libcuda_version("libcuda.so.535.104.05; rm -rf /"));
  EXPECT_FALSE(libcuda_version("libfoo.so.1.2"));
}

TEST(Driver, ComparesAndSaysWhatItFound) {
  auto same = compare_drivers(std::string("535.104.05"), "libcuda.so.535.104.05", "");
  EXPECT_EQ(same.status, DriverCheck::Status::match);
  auto other = compare_drivers(std::string("535.104.05"), "libcuda.so.550.54.14", "");
  EXPECT_EQ(other.status, DriverCheck::Status::mismatch);
  EXPECT_NE(other.message.find("535.104.05"), std::string::npos);
  EXPECT_NE(other.message.find("550.54.14"), std::string::npos);
  EXPECT_EQ(compare_drivers(std::nullopt, "libcuda.so.535.104.05", "").status,
            DriverCheck::Status::unknown);
  auto missing = compare_drivers(std::string("535.104.05"), "", "looked in /usr/lib");
  EXPECT_EQ(missing.status, DriverCheck::Status::unknown);
  EXPECT_NE(missing.message.find("no libcuda.so.1"), std::string::npos);
}

}  // namespace
}  // namespace berth
