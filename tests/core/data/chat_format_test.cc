#include "core/data/chat_format.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict {
namespace {

using ::testing::HasSubstr;

const ChatMessage kSystem{ChatRole::kSystem, "Be brief."};
const ChatMessage kHi{ChatRole::kUser, "Hi"};
const ChatMessage kHello{ChatRole::kAssistant, "Hello!"};
const ChatMessage kHowAreYou{ChatRole::kUser, "How are you?"};
const ChatMessage kFine{ChatRole::kAssistant, "Fine."};

TEST(ChatFormatTest, HhRlhfWritesAnthropicTranscripts) {
  EXPECT_EQ(*RenderChat({kHi, kHello, kHowAreYou}, ChatFormat::kHhRlhf),
            "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?");
  EXPECT_EQ(*RenderChat({kSystem, kHi}, ChatFormat::kHhRlhf), "Be brief.\n\nHuman: Hi");
}

TEST(ChatFormatTest, HhRlhfPromptEndsWithTheAssistantTagAndTheResponseKeepsItsSpace) {
  PromptAndResponse text = *RenderPromptAndResponse({kHi}, {kHello}, ChatFormat::kHhRlhf);
  EXPECT_EQ(text.prompt, "\n\nHuman: Hi\n\nAssistant:");
  EXPECT_EQ(text.response, " Hello!");
}

TEST(ChatFormatTest, ChatMLPromptEndsWithTheAssistantOpener) {
  PromptAndResponse text = *RenderPromptAndResponse({kSystem, kHi}, {kHello}, ChatFormat::kChatML);
  EXPECT_EQ(text.prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(text.response, "Hello!<|im_end|>\n");
}

TEST(ChatFormatTest, Llama2FoldsTheSystemMessageIntoTheFirstInstruction) {
  EXPECT_EQ(*RenderChat({kSystem, kHi, kHello, kHowAreYou, kFine}, ChatFormat::kLlama2),
            "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! "
            "[INST] How are you? [/INST] Fine.");
  PromptAndResponse text =
      *RenderPromptAndResponse({kHi, kHello, kHowAreYou}, {kFine}, ChatFormat::kLlama2);
  EXPECT_EQ(text.prompt, "[INST] Hi [/INST] Hello! [INST] How are you? [/INST]");
  EXPECT_EQ(text.response, " Fine.");
}

TEST(ChatFormatTest, AResponseOfSeveralTurnsIsTheRestOfTheConversation) {
  for (ChatFormat format : {ChatFormat::kHhRlhf, ChatFormat::kChatML, ChatFormat::kLlama2}) {
    PromptAndResponse text = *RenderPromptAndResponse({kHi}, {kHello, kHowAreYou, kFine}, format);
    EXPECT_EQ(text.prompt + text.response, *RenderChat({kHi, kHello, kHowAreYou, kFine}, format))
        << ChatFormatName(format);
  }
  EXPECT_EQ(RenderPromptAndResponse({kHi}, {kHello, kHowAreYou}, ChatFormat::kHhRlhf)->response,
            " Hello!\n\nHuman: How are you?");
}

TEST(ChatFormatTest, TheResponseMustStartWithTheAssistant) {
  absl::StatusOr<PromptAndResponse> text =
      RenderPromptAndResponse({kHi}, {kHowAreYou}, ChatFormat::kHhRlhf);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text.status().message(), HasSubstr("not a user message"));
  EXPECT_THAT(RenderPromptAndResponse({kHi}, {}, ChatFormat::kChatML).status().message(),
              HasSubstr("no messages"));
}

TEST(ChatFormatTest, OnlyTheFirstMessageMayBeASystemMessage) {
  for (ChatFormat format : {ChatFormat::kHhRlhf, ChatFormat::kChatML, ChatFormat::kLlama2}) {
    absl::StatusOr<std::string> text = RenderChat({kHi, kSystem, kHello}, format);
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(text.status().message(), HasSubstr("message 1 is a system message"));
  }
}

TEST(ChatFormatTest, Llama2NeedsUserAndAssistantToAlternate) {
  EXPECT_THAT(RenderChat({kHi, kHowAreYou}, ChatFormat::kLlama2).status().message(),
              HasSubstr("message 1 is user"));
  EXPECT_THAT(RenderChat({kHello}, ChatFormat::kLlama2).status().message(), HasSubstr("alternate"));
  EXPECT_THAT(RenderChat({kSystem, kHello}, ChatFormat::kLlama2).status().message(),
              HasSubstr("user message right after the system message"));
  // hh-rlhf and ChatML take any order.
  EXPECT_TRUE(RenderChat({kHi, kHowAreYou}, ChatFormat::kHhRlhf).ok());
  EXPECT_TRUE(RenderChat({kHi, kHowAreYou}, ChatFormat::kChatML).ok());
}

TEST(ChatFormatTest, NamesRoundTrip) {
  for (ChatFormat format : {ChatFormat::kHhRlhf, ChatFormat::kChatML, ChatFormat::kLlama2}) {
    EXPECT_EQ(*ParseChatFormat(ChatFormatName(format)), format);
  }
  for (ChatRole role : {ChatRole::kSystem, ChatRole::kUser, ChatRole::kAssistant}) {
    EXPECT_EQ(*ParseChatRole(ChatRoleName(role)), role);
  }
  EXPECT_THAT(ParseChatFormat("vicuna").status().message(), HasSubstr("unknown chat format"));
  EXPECT_THAT(ParseChatRole("bot").status().message(), HasSubstr("unknown role \"bot\""));
}

}  // namespace
}  // namespace verdict
