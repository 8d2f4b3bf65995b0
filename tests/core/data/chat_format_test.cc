#include "core/data/chat_format.h"

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

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
  for (ChatFormat format : {ChatFormat::kHhRlhf, ChatFormat::kChatML, ChatFormat::kLlama2,
                            ChatFormat::kQwen3, ChatFormat::kLlama3, ChatFormat::kLlama31,
                            ChatFormat::kQwen2, ChatFormat::kQwen25}) {
    EXPECT_EQ(*ParseChatFormat(ChatFormatName(format)), format);
  }
  for (ChatRole role : {ChatRole::kSystem, ChatRole::kUser, ChatRole::kAssistant}) {
    EXPECT_EQ(*ParseChatRole(ChatRoleName(role)), role);
  }
  EXPECT_THAT(ParseChatFormat("vicuna").status().message(), HasSubstr("unknown chat format"));
  EXPECT_THAT(ParseChatRole("bot").status().message(), HasSubstr("unknown role \"bot\""));
}

nlohmann::json Qwen3Conversations() {
  auto text = ReadFileToString(testing::TestDataPath("tokenizers/qwen3/expected.json"));
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? nlohmann::json::parse(*text)["chat_template"]["conversations"]
                   : nlohmann::json::array();
}

std::vector<ChatMessage> Messages(const nlohmann::json& list) {
  std::vector<ChatMessage> messages;
  for (const nlohmann::json& item : list) {
    absl::StatusOr<ChatRole> role = ParseChatRole(item["role"].get<std::string>());
    EXPECT_TRUE(role.ok()) << role.status();
    messages.push_back({role.value_or(ChatRole::kUser), item["content"].get<std::string>()});
  }
  return messages;
}

// Qwen3's real template, rendered by jinja2 in transformers' environment, for 7 conversations.
TEST(ChatFormatTest, Qwen3RendersEveryFixtureConversationByteForByte) {
  const nlohmann::json conversations = Qwen3Conversations();
  ASSERT_EQ(conversations.size(), 7u);
  for (const nlohmann::json& conversation : conversations) {
    const std::string name = conversation["name"].get<std::string>();
    const std::vector<ChatMessage> messages = Messages(conversation["messages"]);
    ChatRenderOptions options;
    options.add_generation_prompt = conversation["add_generation_prompt"].get<bool>();
    options.enable_thinking = conversation["template_kwargs"].value("enable_thinking", true);
    absl::StatusOr<std::string> text = RenderChat(messages, ChatFormat::kQwen3, options);
    ASSERT_TRUE(text.ok()) << name << ": " << text.status();
    EXPECT_EQ(*text, conversation["rendered"].get<std::string>()) << name;
    // A conversation that ends with the assistant splits into prompt + response at the
    // assistant opener, and the two add up to the same text.
    if (!options.add_generation_prompt && messages.back().role == ChatRole::kAssistant) {
      const std::vector<ChatMessage> prompt(messages.begin(), messages.end() - 1);
      absl::StatusOr<PromptAndResponse> split =
          RenderPromptAndResponse(prompt, {messages.back()}, ChatFormat::kQwen3);
      ASSERT_TRUE(split.ok()) << name << ": " << split.status();
      EXPECT_EQ(split->prompt + split->response, *text) << name;
      EXPECT_THAT(split->prompt, ::testing::EndsWith("<|im_start|>assistant\n")) << name;
    }
  }
}

TEST(ChatFormatTest, Qwen3WritesAnEmptyThinkBlockOnlyForTheFinalAssistantTurn) {
  EXPECT_EQ(*RenderChat({kHi, kHello, kHowAreYou, kFine}, ChatFormat::kQwen3),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\nHow are you?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nFine.<|im_end|>\n");
  PromptAndResponse text = *RenderPromptAndResponse({kHi}, {kHello}, ChatFormat::kQwen3);
  EXPECT_EQ(text.prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(text.response, "<think>\n\n</think>\n\nHello!<|im_end|>\n");
  // A tool response is not the last query: the assistant turn before it, after the real
  // last query, keeps its reasoning; after a real user message it would lose it.
  const ChatMessage reasoned{ChatRole::kAssistant, "<think>\nLook it up.\n</think>\n\nCalling."};
  const ChatMessage tool_result{ChatRole::kUser, "<tool_response>\n42\n</tool_response>"};
  EXPECT_EQ(*RenderChat({kHi, reasoned, tool_result, kFine}, ChatFormat::kQwen3),
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nLook it up.\n</think>\n\nCalling.<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nFine.<|im_end|>\n");
  EXPECT_EQ(*RenderChat({kHi, reasoned, kHowAreYou, kFine}, ChatFormat::kQwen3),
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nCalling.<|im_end|>\n"
            "<|im_start|>user\nHow are you?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\nFine.<|im_end|>\n");
}

TEST(ChatFormatTest, Qwen3RefusesAPromptThatRendersDifferentlyAlone) {
  // The prompt's last assistant turn gets a think block alone but not inside the whole.
  absl::StatusOr<PromptAndResponse> text =
      RenderPromptAndResponse({kHi, kHello}, {kFine}, ChatFormat::kQwen3);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(text.status().message(), HasSubstr("qwen3"));
}

TEST(ChatFormatTest, QwenDefaultSystemMessages) {
  EXPECT_EQ(*RenderChat({kHi}, ChatFormat::kQwen2),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(*RenderChat({kHi}, ChatFormat::kQwen25),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(*RenderChat({kSystem, kHi}, ChatFormat::kQwen25),
            *RenderChat({kSystem, kHi}, ChatFormat::kChatML));
}

TEST(ChatFormatTest, Llama3WritesHeadersAndTrimsContent) {
  const ChatMessage padded{ChatRole::kUser, " \n Hi there\t\n"};
  EXPECT_EQ(*RenderChat({kSystem, padded, kHello}, ChatFormat::kLlama3),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>");
  PromptAndResponse text = *RenderPromptAndResponse({kHi}, {kHello}, ChatFormat::kLlama3);
  EXPECT_EQ(text.prompt,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(text.response, "Hello!<|eot_id|>");
}

TEST(ChatFormatTest, Llama31AlwaysWritesTheDatedSystemTurn) {
  EXPECT_EQ(*RenderChat({kHi}, ChatFormat::kLlama31),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  EXPECT_EQ(*RenderChat({kSystem, kHi}, ChatFormat::kLlama31),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief."
            "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatFormatTest, GenerationPromptAppendsTheAssistantOpener) {
  ChatRenderOptions options;
  options.add_generation_prompt = true;
  EXPECT_EQ(*RenderChat({kHi}, ChatFormat::kChatML, options),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(*RenderChat({kHi}, ChatFormat::kQwen3, options),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  options.enable_thinking = false;
  EXPECT_EQ(*RenderChat({kHi}, ChatFormat::kQwen3, options),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

// Real templates, as tokenizer_config.json files hold them.
constexpr char kChatMLTemplate[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";
constexpr char kQwen2Template[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' "
    "+ message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
constexpr char kLlama3Template[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
    "endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
constexpr char kLlama31Excerpt[] =
    "{{- bos_token }}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul "
    "2024\" %}\n{%- endif %}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + "
    "\"\\n\\n\" }}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}";
constexpr char kLlama32Excerpt[] =
    "{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set "
    "date_string = strftime_now(\"%d %b %Y\") %}\n{{- \"Cutting Knowledge Date: December "
    "2023\\n\" }}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}";
constexpr char kZephyrTemplate[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
    "message['content'] + eos_token }}\n{% endif %}\n{% endfor %}";

TEST(ChatFormatTest, RecognisesKnownTemplatesByTheirMarkers) {
  EXPECT_EQ(*ChatFormatFromTemplate(kChatMLTemplate), ChatFormat::kChatML);
  EXPECT_EQ(*ChatFormatFromTemplate(kQwen2Template), ChatFormat::kQwen2);
  EXPECT_EQ(*ChatFormatFromTemplate(kLlama3Template), ChatFormat::kLlama3);
  EXPECT_EQ(*ChatFormatFromTemplate(kLlama31Excerpt), ChatFormat::kLlama31);
  absl::StatusOr<ChatFormat> dated = ChatFormatFromTemplate(kLlama32Excerpt);
  EXPECT_EQ(dated.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dated.status().message(), HasSubstr("strftime_now"));
  absl::StatusOr<ChatFormat> unknown = ChatFormatFromTemplate(kZephyrTemplate);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("none of the known ones"));
  // ChatML with a default system prompt nobody named is not taken for plain ChatML.
  std::string custom = kChatMLTemplate;
  custom += "{{ '<|im_start|>system\\nYou are a pirate.<|im_end|>\\n' }}";
  EXPECT_FALSE(ChatFormatFromTemplate(custom).ok());
}

TEST(ChatFormatTest, ChoosesTheFormatOfAModelDirectory) {
  const std::string qwen3 = testing::TestDataPath("tokenizers/qwen3");
  EXPECT_EQ(*ChooseChatFormat(qwen3, ""), ChatFormat::kQwen3);
  EXPECT_EQ(*ChooseChatFormat(qwen3, "chatml"), ChatFormat::kChatML);  // an explicit setting wins
  EXPECT_THAT(ChooseChatFormat(qwen3, "vicuna").status().message(),
              HasSubstr("unknown chat format"));
  testing::ScratchDir dir;
  absl::StatusOr<ChatFormat> none = ChooseChatFormat(dir.path().string(), "");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("name a chat format"));
  ASSERT_TRUE(WriteFileAtomically(dir.Path("tokenizer_config.json"),
                                  nlohmann::json{{"chat_template", kZephyrTemplate}}.dump())
                  .ok());
  absl::StatusOr<ChatFormat> unknown = ChooseChatFormat(dir.path().string(), "");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("tokenizer_config.json"));
  ASSERT_TRUE(WriteFileAtomically(
                  dir.Path("tokenizer_config.json"),
                  nlohmann::json{{"chat_template",
                                  nlohmann::json::array(
                                      {{{"name", "tool_use"}, {"template", kZephyrTemplate}},
                                       {{"name", "default"}, {"template", kLlama3Template}}})}}
                      .dump())
                  .ok());
  EXPECT_EQ(*ChooseChatFormat(dir.path().string(), ""), ChatFormat::kLlama3);
  // chat_template.jinja, where newer transformers save the template, comes first.
  ASSERT_TRUE(WriteFileAtomically(dir.Path("chat_template.jinja"), kChatMLTemplate).ok());
  EXPECT_EQ(*ChooseChatFormat(dir.path().string(), ""), ChatFormat::kChatML);
  ASSERT_TRUE(WriteFileAtomically(dir.Path("chat_template.jinja"), kZephyrTemplate).ok());
  EXPECT_THAT(ChooseChatFormat(dir.path().string(), "").status().message(),
              HasSubstr("chat_template.jinja"));
}

}  // namespace
}  // namespace verdict
